//! The ads back end example, started in-process on a free port and driven over HTTP.

#![allow(dead_code)]

#[path = "../examples/ads_backend/app.rs"]
mod app;
#[path = "../examples/ads_backend/db.rs"]
mod db;
mod support {
    pub(crate) mod ads;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_caching_shows_in_the_stats() {
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
        database_url: None,
    };
    let (base, _optimizer) = support::ads::serve(&options).await;
    support::ads::walk_every_endpoint(&base).await;
}
