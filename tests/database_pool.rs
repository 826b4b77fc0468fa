//! `WatchedPool` over a real sqlx pool: its connections as they are held and returned, and
//! the acquisitions that waited, a cancelled one included.

use std::{sync::Arc, time::Duration};

use perf::query::{PoolSource, WatchedPool};
use sqlx::sqlite::SqlitePoolOptions;

#[tokio::test]
async fn a_watched_pool_counts_connections_and_waits() {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("an in-memory database");
    let watched = Arc::new(WatchedPool::new(pool));
    let stats = watched.pool_stats();
    assert_eq!(
        (stats.max_size, stats.size, stats.idle),
        (1, 1, 1),
        "{stats:?}"
    );

    // An idle connection: taken at once, no wait.
    let held = watched.acquire().await.expect("a connection");
    let stats = watched.pool_stats();
    assert_eq!(
        (stats.in_use, stats.idle, stats.waits),
        (1, 0, 0),
        "{stats:?}"
    );

    // None idle: the next caller waits until the first returns it.
    let waiting = tokio::spawn({
        let watched = Arc::clone(&watched);
        async move { watched.acquire().await.map(drop) }
    });
    while watched.pool_stats().waits == 0 {
        tokio::task::yield_now().await;
    }
    drop(held);
    waiting.await.expect("joined").expect("a connection");
    all_returned(&watched).await;

    // A caller that gives up while waiting is counted too, with the time it waited.
    let held = watched.acquire().await.expect("a connection");
    let gave_up = tokio::time::timeout(Duration::from_millis(20), watched.acquire()).await;
    assert!(gave_up.is_err(), "the only connection is held");
    drop(held);

    let stats = watched.pool_stats();
    assert_eq!(stats.waits, 2, "{stats:?}");
    assert!(
        stats.wait_seconds >= 0.02,
        "the abandoned wait counted: {stats:?}"
    );
    all_returned(&watched).await;
    assert_eq!(watched.pool_stats().size, 1);

    // Through the optimizer: in the database report.
    let optimizer = perf::PerformanceOptimizer::builder()
        .build()
        .expect("valid");
    let source: Arc<dyn PoolSource> = watched.clone();
    optimizer
        .query()
        .watch_pool("sqlite", &source)
        .expect("watched");
    let report = optimizer.query().analyze();
    assert_eq!(report.pools.len(), 1);
    assert_eq!(
        (report.pools[0].name.as_str(), report.pools[0].stats.waits),
        ("sqlite", 2)
    );

    // Held weakly: a dropped pool leaves the report.
    drop((source, watched));
    assert!(optimizer.query().analyze().pools.is_empty());
}

/// Waits until no connection is in use: a dropped one goes back to the pool in a task of
/// sqlx's, not at once.
async fn all_returned(watched: &WatchedPool<sqlx::Sqlite>) {
    let returned = async {
        while watched.pool_stats().in_use != 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), returned)
        .await
        .expect("the connections went back");
}

#[test]
fn at_most_sixteen_pools_are_watched() {
    struct Empty;
    impl PoolSource for Empty {
        fn pool_stats(&self) -> perf::query::PoolStats {
            perf::query::PoolStats::default()
        }
    }
    let optimizer = perf::PerformanceOptimizer::builder()
        .build()
        .expect("valid");
    let pool: Arc<dyn PoolSource> = Arc::new(Empty);
    for n in 0..16 {
        optimizer
            .query()
            .watch_pool(&format!("pool{n}"), &pool)
            .expect("within the limit");
    }
    optimizer
        .query()
        .watch_pool("pool3", &pool)
        .expect("a known name is replaced, not added");
    let refused = optimizer.query().watch_pool("pool16", &pool);
    assert!(
        matches!(&refused, Err(perf::Error::TooManyPools { limit: 16, .. })),
        "{refused:?}"
    );
    assert_eq!(optimizer.query().analyze().pools.len(), 16);
}
