//! The query optimizer's costs, in one run, printing them against their targets and rivals:
//!
//! - fingerprint + record of a repeated query (target: at most 1 µs);
//! - fingerprint + record of a query never seen before (target: at most 50 µs), against
//!   parsing it with sqlparser's full parser, the usual way to get at a query's structure;
//! - a `cached_query` hit against running the same query on SQLite (in memory, indexed).
//!
//! `cargo bench --bench query`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{hint::black_box, time::Duration};

use common::median_ns;
use criterion::Criterion;
use perf::PerformanceOptimizer;
use sqlparser::{dialect::GenericDialect, parser::Parser};
use sqlx::{Row, SqlitePool, sqlite::SqlitePoolOptions};

const SQL: &str = "SELECT a.id, a.title, c.budget FROM ads a JOIN campaigns c ON a.campaign = c.id \
                   WHERE a.campaign = 42 AND a.status IN ('live', 'paused') ORDER BY a.id LIMIT 20";

async fn database() -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE ads (id INTEGER PRIMARY KEY, campaign INTEGER, title TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE INDEX ads_campaign ON ads (campaign)")
        .execute(&pool)
        .await
        .unwrap();
    for id in 0..10_000 {
        sqlx::query("INSERT INTO ads (id, campaign, title) VALUES (?, ?, ?)")
            .bind(id)
            .bind(id % 500)
            .bind(format!("ad {id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

const READ: &str = "SELECT id, title FROM ads WHERE campaign = ? ORDER BY id";

async fn read(pool: &SqlitePool, campaign: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(READ).bind(campaign).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<i64, _>("id"), row.get::<String, _>("title")))
        .collect())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime.block_on(database());
    let optimizer = PerformanceOptimizer::builder().build().unwrap();
    let query = optimizer.query();

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    let mut group = c.benchmark_group("query_record");
    group.bench_function("repeated", |b| {
        b.iter(|| {
            query.record(
                "select",
                Some(black_box(SQL)),
                Duration::from_micros(250),
                false,
                Some(20),
            )
        })
    });
    let mut n = 0u64;
    group.bench_function("first_seen", |b| {
        b.iter_batched(
            || {
                n += 1;
                SQL.replace("a.title", &format!("a.title_{n}"))
            },
            |sql| {
                query.record(
                    "select",
                    Some(&sql),
                    Duration::from_micros(250),
                    false,
                    Some(20),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("sqlparser_parse", |b| {
        b.iter(|| Parser::parse_sql(&GenericDialect {}, black_box(SQL)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("cached_query");
    runtime.block_on(async {
        query
            .cached_query(READ, &(7,), None, || read(&pool, 7))
            .await
            .unwrap();
    });
    group.bench_function("perf_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            query
                .cached_query(READ, &(7,), None, || read(&pool, 7))
                .await
                .unwrap()
        })
    });
    group.bench_function("sqlite", |b| {
        b.to_async(&runtime)
            .iter(|| async { read(&pool, 7).await.unwrap() })
    });
    group.finish();
    c.final_summary();

    println!("== results (medians) ==");
    let m = |group: &str, bench: &str| median_ns(group, bench);
    if let (Some(repeated), Some(first), Some(parse)) = (
        m("query_record", "repeated"),
        m("query_record", "first_seen"),
        m("query_record", "sqlparser_parse"),
    ) {
        println!(
            "fingerprint + record: repeated query {:.0} ns (target <= 1 us); first seen {:.1} us \
             (target <= 50 us); sqlparser full parse alone {:.1} us ({:.2}x ours)",
            repeated,
            first / 1e3,
            parse / 1e3,
            parse / first
        );
    }
    if let (Some(hit), Some(sqlite)) = (m("cached_query", "perf_hit"), m("cached_query", "sqlite"))
    {
        println!(
            "cached_query hit {:.2} us, the SQLite query (20 rows, indexed) {:.1} us: {:.1}x faster",
            hit / 1e3,
            sqlite / 1e3,
            sqlite / hit
        );
    }
}
