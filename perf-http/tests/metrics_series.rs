//! The series the seed's dashboard panels need, read back from `/metrics` with their values:
//! cache operations and sizes (a remote tier included), running and queued tasks, slow
//! queries, the query result cache, connection pools, memory cleanups and network I/O. Its
//! own test binary: it installs the process's metrics recorder, and one optimizer sets the
//! gauges.

use std::{
    collections::HashMap,
    sync::{Arc, mpsc},
    time::Duration,
};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use perf_core::{
    PerformanceConfig, PerformanceOptimizer, RemoteError, Tier,
    cache::{BoxFuture, Clock, L1_ENTRY_BYTES_ESTIMATE, RemoteTier},
    query::{PoolSource, PoolStats},
};
use tower::ServiceExt;

/// What the remote tier says it uses.
const REMOTE_BYTES: u64 = 4_096_000;

/// A remote tier in memory that reports a fixed size.
#[derive(Debug, Default)]
struct SizedRemote {
    map: std::sync::Mutex<HashMap<String, Vec<u8>>>,
}

impl RemoteTier for SizedRemote {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move { Ok(self.map.lock().expect("not poisoned").get(key).cloned()) })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.map
                .lock()
                .expect("not poisoned")
                .insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.map.lock().expect("not poisoned").remove(key);
            Ok(())
        })
    }
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let mut map = self.map.lock().expect("not poisoned");
            let before = map.len();
            map.retain(|key, _| !key.starts_with(prefix));
            Ok((before - map.len()) as u64)
        })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            self.map.lock().expect("not poisoned").clear();
            Ok(())
        })
    }
    fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
        Box::pin(async { Ok(Some(REMOTE_BYTES)) })
    }
}

async fn scrape(app: &axum::Router) -> String {
    let response = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert!(response.status().is_success());
    let body = response.into_body().collect().await.expect("body");
    String::from_utf8(body.to_bytes().to_vec()).expect("utf-8")
}

/// The value of series `name{labels}` (`labels` as rendered, or empty for none).
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    let line = text.lines().find(|line| line.starts_with(&series))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Polls `done` for up to 5 s: work on other threads (blocking tasks, a sample task) takes
/// its own time to get there.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test]
async fn every_dashboard_series_is_exported_with_its_value() {
    let handle = perf_http::install_prometheus().expect("recorder installed");
    let app = perf_http::metrics_router(handle);
    let (clock, mock) = Clock::mock();
    let mut config = PerformanceConfig::default();
    config.tasks.max_workers = 2;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .clock(clock)
        .remote_tier(Arc::new(SizedRemote::default()))
        .build()
        .expect("valid");

    // ----- cache operations and sizes -----
    let cache = optimizer.cache();
    let long = Some(Duration::from_secs(86_400));
    for i in 0..10u32 {
        cache
            .set(&format!("k{i}"), i, Tier::L2, long)
            .await
            .expect("stored");
    }
    cache
        .set("shared", 10u32, Tier::Redis, long)
        .await
        .expect("stored");
    cache
        .set("short", 11u32, Tier::L2, Some(Duration::from_secs(1)))
        .await
        .expect("stored");
    mock.increment(Duration::from_secs(2));
    assert_eq!(cache.sweep_expired(), 2, "short, from L1 and L2");
    assert!(cache.delete("k0").await.expect("deleted"));
    assert_eq!(cache.invalidate_prefix("k1").await.expect("invalidated"), 2);
    let (l1_evicted, l2_evicted) = cache.shrink(0.5);
    assert!(l1_evicted > 0 && l2_evicted > 0);
    let stats = cache.stats();
    assert_eq!((stats.l1.removals, stats.l2.removals), (2, 2));

    optimizer.publish_metrics();
    let text = scrape(&app).await;
    let operation = |tier: &str, operation: &str| {
        value(
            &text,
            "cache_operations_total",
            &format!(r#"tier="{tier}",operation="{operation}""#),
        )
    };
    for tier in ["l1", "l2"] {
        assert_eq!(operation(tier, "insert"), Some(12.0), "{tier}\n{text}");
        assert_eq!(operation(tier, "expiration"), Some(1.0), "{tier}");
        assert_eq!(operation(tier, "removal"), Some(2.0), "{tier}");
    }
    assert_eq!(operation("l1", "eviction"), Some(l1_evicted as f64));
    assert_eq!(operation("l2", "eviction"), Some(l2_evicted as f64));
    assert_eq!(operation("redis", "insert"), Some(1.0));
    assert_eq!(operation("redis", "removal"), Some(1.0), "the delete of k0");

    let entries = stats.l1.entries.expect("L1 counts its entries");
    let size = |tier: &str| value(&text, "cache_size_bytes", &format!(r#"tier="{tier}""#));
    assert_eq!(size("l1"), Some((entries * L1_ENTRY_BYTES_ESTIMATE) as f64));
    assert_eq!(size("l2"), stats.l2.bytes.map(|bytes| bytes as f64));
    // The first publish started a sample of the remote tier in a task of its own.
    let mut text = text;
    for _ in 0..5_000 {
        if size_of_redis(&text).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        optimizer.publish_metrics();
        text = scrape(&app).await;
    }
    assert_eq!(size_of_redis(&text), Some(REMOTE_BYTES as f64), "{text}");

    // ----- memory cleanups (the seed's gc_collections_total) and network I/O -----
    let cleanups = |text: &str, reason: &str| {
        value(
            text,
            "memory_cleanups_total",
            &format!(r#"reason="{reason}""#),
        )
    };
    assert_eq!(
        cleanups(&text, "threshold"),
        Some(0.0),
        "0 before the first"
    );
    assert_eq!(cleanups(&text, "forced"), Some(0.0));
    optimizer
        .memory()
        .cleanup_memory(true)
        .expect("a forced cleanup runs");

    let before = optimizer.system().sample();
    optimizer.publish_metrics();
    let after = optimizer.system().sample();
    let text = scrape(&app).await;
    assert_eq!(cleanups(&text, "forced"), Some(1.0));
    let network = |direction: &str| {
        value(
            &text,
            "network_io_bytes_total",
            &format!(r#"direction="{direction}""#),
        )
        .expect("network I/O published")
    };
    let received = network("received");
    assert!(
        (before.network_received_bytes as f64..=after.network_received_bytes as f64)
            .contains(&received),
        "{received} outside the samples around it"
    );
    let transmitted = network("transmitted");
    assert!(
        (before.network_transmitted_bytes as f64..=after.network_transmitted_bytes as f64)
            .contains(&transmitted)
    );

    // ----- running and queued tasks -----
    let tasks = optimizer.tasks();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut handles = Vec::new();
    for _ in 0..3 {
        let gate = Arc::clone(&gate);
        let task = tasks
            .submit(async move { gate.acquire().await.map(drop).map_err(drop) })
            .await
            .expect("accepted");
        handles.push(task);
    }
    let (release, held) = mpsc::channel::<()>();
    let blocking = tasks
        .submit_blocking(move || held.recv().map_err(drop))
        .await
        .expect("accepted");
    until("two tasks running, one queued, one blocking", || {
        let stats = tasks.stats();
        (stats.running, stats.queued, stats.running_blocking) == (2, 1, 1)
    })
    .await;
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "tasks_running", r#"pool="async""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "tasks_running", r#"pool="blocking""#),
        Some(1.0)
    );
    assert_eq!(value(&text, "tasks_queued", ""), Some(1.0));

    gate.add_permits(3);
    release.send(()).expect("the blocking task waits");
    for task in handles {
        assert!(task.await.is_completed());
    }
    assert!(blocking.await.is_completed());
    until("every task done", || {
        let stats = tasks.stats();
        (stats.running, stats.queued, stats.running_blocking) == (0, 0, 0)
    })
    .await;
    let text = scrape(&app).await;
    assert_eq!(value(&text, "tasks_running", r#"pool="async""#), Some(0.0));
    assert_eq!(
        value(&text, "tasks_running", r#"pool="blocking""#),
        Some(0.0)
    );
    assert_eq!(value(&text, "tasks_queued", ""), Some(0.0));

    // ----- slow queries and the query result cache -----
    let query = optimizer.query();
    query.record(
        "report",
        Some("SELECT * FROM impressions"),
        Duration::from_secs(2),
        false,
        None,
    );
    query.record(
        "lookup",
        Some("SELECT name FROM ads WHERE id = 1"),
        Duration::from_millis(3),
        false,
        None,
    );
    let sql = "SELECT name FROM ads WHERE id = $1";
    for _ in 0..2 {
        let rows = query
            .cached_query(sql, &(7,), None, || async {
                Ok::<_, std::io::Error>(vec!["banner".to_owned()])
            })
            .await
            .expect("loaded");
        assert_eq!(*rows, ["banner"]);
    }
    let absent = query
        .get_cached_query::<Vec<String>, _>(sql, &(8,))
        .await
        .expect("looked up");
    assert!(absent.is_none());
    assert_eq!(query.result_cache_counts(), (1, 2));

    let text = scrape(&app).await;
    let slow = |query_type: &str| {
        value(
            &text,
            "database_slow_queries_total",
            &format!(r#"query_type="{query_type}""#),
        )
    };
    assert_eq!(slow("report"), Some(1.0), "{text}");
    assert_eq!(slow("lookup"), Some(0.0), "a type starts at 0");
    assert_eq!(value(&text, "query_cache_hits_total", ""), Some(1.0));
    assert_eq!(value(&text, "query_cache_misses_total", ""), Some(2.0));

    // ----- a watched connection pool -----
    let pool = Arc::new(ScriptedPool(std::sync::Mutex::new(PoolStats {
        max_size: 8,
        size: 5,
        idle: 2,
        in_use: 3,
        waits: 4,
        wait_seconds: 0.5,
    })));
    let source: Arc<dyn PoolSource> = pool.clone();
    query.watch_pool("primary", &source).expect("watched");
    let text = scrape(&app).await;
    let connections = |text: &str, state: &str| {
        value(
            text,
            "database_pool_connections",
            &format!(r#"pool="primary",state="{state}""#),
        )
    };
    assert_eq!(connections(&text, "idle"), Some(2.0), "{text}");
    assert_eq!(connections(&text, "in_use"), Some(3.0));
    let max = value(&text, "database_pool_max_connections", r#"pool="primary""#);
    assert_eq!(max, Some(8.0));
    let waits = |text: &str| value(text, "database_pool_waits_total", r#"pool="primary""#);
    assert_eq!(waits(&text), Some(4.0));

    // The counter takes what the pool counted since; the gauges are read anew.
    {
        let mut stats = pool.0.lock().expect("not poisoned");
        stats.waits = 9;
        stats.idle = 5;
        stats.in_use = 0;
    }
    let text = scrape(&app).await;
    assert_eq!(waits(&text), Some(9.0));
    assert_eq!(connections(&text, "idle"), Some(5.0));
    assert_eq!(connections(&text, "in_use"), Some(0.0));
    assert_eq!(query.analyze().pools[0].stats.waits, 9);
}

/// A connection pool whose figures the test sets.
struct ScriptedPool(std::sync::Mutex<PoolStats>);

impl PoolSource for ScriptedPool {
    fn pool_stats(&self) -> PoolStats {
        *self.0.lock().expect("not poisoned")
    }
}

fn size_of_redis(text: &str) -> Option<f64> {
    value(text, "cache_size_bytes", r#"tier="redis""#)
}
