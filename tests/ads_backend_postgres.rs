//! The ads back end on a real PostgreSQL (`DATABASE_URL`): the same walk through every
//! endpoint as on SQLite, the schema from its migrations, the seed written once, and the
//! connection pool in the database report and the metrics.
#![cfg(unix)]
#![allow(dead_code)]

#[path = "../examples/ads_backend/app.rs"]
mod app;
#[path = "../examples/ads_backend/db.rs"]
mod db;
mod support {
    pub(crate) mod ads;
    pub(crate) mod postgres;
}

use serde_json::Value;
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ads_back_end_runs_on_postgres() {
    let Some(postgres) = support::postgres::PostgresServer::start() else {
        return;
    };
    let options = app::Options {
        addr: "127.0.0.1:0".parse().expect("address"),
        redis_url: None,
        cache_enabled: true,
        seed: db::Seed {
            ads: 500,
            users: 100,
            impressions: 5_000,
        },
        db_fault: app::DbFault::None,
        admin_token: Some("fault-switch-token-for-tests".into()),
        config: None,
        database_url: Some(postgres.url()),
    };
    let (base, optimizer) = support::ads::serve(&options).await;
    support::ads::walk_every_endpoint(&base).await;

    // The pool, as the admin API and the metrics show it.
    let client = reqwest::Client::new();
    let database: Value = client
        .get(format!("{base}/performance/database/stats"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let pool = &database["pools"][0];
    assert_eq!(pool["name"], "postgres", "{database}");
    let pool_size = optimizer.config().query.pool_size;
    assert_eq!(pool["max_size"], pool_size);
    let size = pool["size"].as_u64().expect("a size");
    assert!((1..=u64::from(pool_size)).contains(&size), "{pool}");
    assert_eq!(
        pool["idle"]
            .as_u64()
            .zip(pool["in_use"].as_u64())
            .map(|(a, b)| a + b),
        Some(size)
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    let max_line = format!("database_pool_max_connections{{pool=\"postgres\"}} {pool_size}");
    assert!(
        metrics.lines().any(|line| line == max_line),
        "{max_line} not in:\n{metrics}"
    );
    assert!(metrics.contains(r#"database_pool_connections{pool="postgres",state="idle"}"#));

    // Migrations ran once, and opening again applies nothing new and seeds nothing twice.
    let (again, backend) = db::open(Some(&postgres.url()), 2, options.seed)
        .await
        .expect("opened again");
    assert_eq!(backend, db::Backend::Postgres);
    let mut connection = again.acquire().await.expect("a connection");
    let applied = sqlx::query("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(&mut *connection)
        .await
        .expect("the migrations table");
    let applied: Vec<(i64, bool)> = applied
        .iter()
        .map(|row| (row.get("version"), row.get("success")))
        .collect();
    assert_eq!(applied, [(1, true)]);
    let (ads,): (i64,) = sqlx::query_as("SELECT count(*) FROM ads")
        .fetch_one(&mut *connection)
        .await
        .expect("counted");
    assert_eq!(ads, 500, "seeded once");
    let (impressions,): (i64,) = sqlx::query_as("SELECT count(*) FROM impressions")
        .fetch_one(&mut *connection)
        .await
        .expect("counted");
    assert_eq!(
        impressions,
        5_000 + 1,
        "the seed's and the walk's one write"
    );
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused_by_name() {
    let seed = db::Seed {
        ads: 1,
        users: 1,
        impressions: 1,
    };
    let refused = db::open(Some("mysql://localhost/ads"), 1, seed).await;
    let error = refused.expect_err("refused").to_string();
    assert!(
        error.contains("DATABASE_URL") && error.contains("mysql"),
        "{error}"
    );
}
