//! The query optimizer against a real database: SQLite through sqlx, in memory.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use perf::{PerformanceConfig, PerformanceOptimizer};
use sqlx::{Row, SqlitePool, sqlite::SqlitePoolOptions};

async fn database() -> SqlitePool {
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    sqlx::query("CREATE TABLE ads (id INTEGER PRIMARY KEY, campaign INTEGER, title TEXT)")
        .execute(&pool)
        .await
        .expect("created");
    for id in 1..=20 {
        sqlx::query("INSERT INTO ads (id, campaign, title) VALUES (?, ?, ?)")
            .bind(id)
            .bind(id % 3)
            .bind(format!("ad {id}"))
            .execute(&pool)
            .await
            .expect("inserted");
    }
    pool
}

fn optimizer(slow: Duration) -> PerformanceOptimizer {
    let mut config = PerformanceConfig::default();
    config.query.slow_threshold = slow;
    PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid")
}

async fn titles(pool: &SqlitePool, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(sql).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|row| row.get::<String, _>("title"))
        .collect())
}

#[tokio::test]
async fn queries_of_one_shape_share_statistics_and_counts_match_what_ran() {
    let pool = database().await;
    let optimizer = optimizer(Duration::from_secs(10));
    let query = optimizer.query();
    for id in [1, 2, 3, 1, 2] {
        let sql = format!("SELECT title FROM ads WHERE id = {id}");
        let found = query
            .timed("select", &sql, titles(&pool, &sql))
            .await
            .expect("ran");
        assert_eq!(found, [format!("ad {id}")]);
    }
    for campaign in [0, 1, 2] {
        let sql =
            format!("select title from ads where campaign = {campaign} and id in (1, 2, 3, 4)");
        query
            .timed("select", &sql, titles(&pool, &sql))
            .await
            .expect("ran");
    }
    let missing = "SELECT title FROM no_such_table WHERE id = 1";
    assert!(
        query
            .timed("select", missing, titles(&pool, missing))
            .await
            .is_err()
    );

    let by_id = query
        .stats_for("SELECT title FROM ads WHERE id = 99")
        .expect("recorded");
    assert_eq!(
        by_id.normalized.as_ref(),
        "select title from ads where id = ?"
    );
    assert_eq!((by_id.calls, by_id.errors), (5, 0));
    let by_campaign = query
        .stats_for("SELECT title FROM ads WHERE campaign = 5 AND id IN (9)")
        .expect("recorded");
    assert_eq!(by_campaign.calls, 3);
    assert_ne!(by_campaign.fingerprint, by_id.fingerprint);
    let failing = query.stats_for(missing).expect("recorded");
    assert_eq!((failing.calls, failing.errors), (1, 1));
    assert!(by_id.min_seconds > 0.0 && by_id.max_seconds >= by_id.mean_seconds);

    let report = query.analyze();
    assert_eq!(report.shapes, 3);
    assert_eq!(report.most_errors[0].fingerprint, failing.fingerprint);
    assert!(report.slow_queries.is_empty(), "nothing over 10 s");
    query.clear();
    assert!(query.stats().is_empty());
}

#[tokio::test]
async fn a_slow_query_lands_in_the_slow_log() {
    let pool = database().await;
    let optimizer = optimizer(Duration::from_millis(20));
    let query = optimizer.query();
    let slow = "WITH RECURSIVE counter(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM counter \
                WHERE x < 3000000) SELECT count(*) AS n FROM counter";
    let n: i64 = query
        .timed("select", slow, async {
            sqlx::query(slow)
                .fetch_one(&pool)
                .await
                .map(|row| row.get::<i64, _>("n"))
        })
        .await
        .expect("ran");
    assert_eq!(n, 3_000_000);
    let fast = "SELECT title FROM ads WHERE id = 1";
    query
        .timed("select", fast, titles(&pool, fast))
        .await
        .expect("ran");

    let logged = query.slow_queries();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].normalized.starts_with("with recursive counter"));
    assert!(logged[0].seconds >= 0.02);
    assert_eq!(
        query.analyze().slowest[0].fingerprint,
        logged[0].fingerprint
    );
}

#[tokio::test]
async fn cached_results_are_served_until_their_table_is_invalidated() {
    let pool = database().await;
    let optimizer = optimizer(Duration::from_secs(10));
    let query = optimizer.query();
    let reads = AtomicUsize::new(0);
    let sql = "SELECT id, title FROM ads WHERE campaign = ? ORDER BY id";
    let read = async |campaign: i64| {
        let (pool, reads) = (&pool, &reads);
        query
            .cached_query(sql, &(campaign,), None, move || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                let rows = sqlx::query(sql).bind(campaign).fetch_all(pool).await?;
                Ok::<_, sqlx::Error>(
                    rows.iter()
                        .map(|row| (row.get::<i64, _>("id"), row.get::<String, _>("title")))
                        .collect::<Vec<_>>(),
                )
            })
            .await
    };
    let first = read(1).await.expect("read");
    assert_eq!(first[0], (1, "ad 1".to_string()));
    assert_eq!(read(1).await.expect("cached"), first);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "the second read was served from the cache"
    );
    read(2).await.expect("read");
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "other parameters, another entry"
    );

    sqlx::query("UPDATE ads SET title = 'renamed' WHERE id = 1")
        .execute(&pool)
        .await
        .expect("updated");
    assert_eq!(
        read(1).await.expect("cached")[0].1,
        "ad 1",
        "still cached before invalidation"
    );
    query.invalidate_table("ADS").await.expect("invalidated");
    assert_eq!(read(1).await.expect("read")[0].1, "renamed");
    assert_eq!(
        reads.load(Ordering::SeqCst),
        3,
        "the read after invalidation reached the database"
    );
    query
        .invalidate_table("clicks")
        .await
        .expect("nothing cached: nothing to drop");
    assert_eq!(
        read(1).await.expect("cached")[0].1,
        "renamed",
        "another table's invalidation leaves the entry"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 3);

    // The manual pair, keyed by the exact text: literals and spelling are part of the key.
    query
        .cache_query_result("SELECT 1 FROM ads WHERE id = 1", &(), vec![1u8], None)
        .await
        .expect("cached");
    let read = |sql: &'static str| async move {
        let cached: Option<std::sync::Arc<Vec<u8>>> =
            query.get_cached_query(sql, &()).await.expect("read");
        cached.as_deref().cloned()
    };
    assert_eq!(
        read("SELECT 1 FROM ads WHERE id = 1").await,
        Some(vec![1u8])
    );
    assert_eq!(
        read("SELECT 1 FROM ads WHERE id = 2").await,
        None,
        "same shape, another literal: another result"
    );
    assert_eq!(
        read("select 1 from ADS where id = 1").await,
        None,
        "another spelling may be another table to the database"
    );
}

/// Fingerprints reach JSON as strings: above 2^53 a number loses digits in JavaScript and jq.
#[test]
fn fingerprints_are_strings_in_json() {
    let optimizer = PerformanceOptimizer::builder().build().expect("valid");
    let query = optimizer.query();
    query.record(
        "select",
        Some("SELECT * FROM json_check WHERE id = 1"),
        std::time::Duration::from_millis(2),
        false,
        None,
    );
    let stats = query.stats();
    let json = serde_json::to_value(&stats).expect("serializes");
    let first = &json.as_array().expect("a list")[0];
    assert_eq!(
        first["fingerprint"],
        serde_json::Value::String(stats[0].fingerprint.to_string())
    );
}
