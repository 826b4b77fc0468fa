//! With an installed optimizer, cache counters reach the application's metrics recorder.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use perf::{PerformanceOptimizer, Tier};

#[tokio::test(start_paused = true)]
async fn cache_metrics_are_published_every_second() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let optimizer = PerformanceOptimizer::builder()
        .build()
        .expect("valid")
        .install()
        .expect("installed");
    let cache = optimizer.cache();
    cache
        .set("ad:1", "banner".to_string(), Tier::L2, None)
        .await
        .expect("stored");
    for _ in 0..3 {
        cache.get::<String>("ad:1", Tier::L1).await.expect("ok");
    }
    cache.get::<String>("ad:2", Tier::L2).await.expect("ok");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snapshot = snapshotter.snapshot().into_hashmap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _)| {
                key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, (unit, help, value))| (unit.is_some() && help.is_some(), value))
    };
    let hits = value("cache_hits_total", &[("tier", "l1"), ("operation", "get")]);
    assert_eq!(
        hits,
        Some((true, &DebugValue::Counter(3))),
        "described at install, published by the loop"
    );
    let l2_misses = value(
        "cache_misses_total",
        &[("tier", "l2"), ("operation", "get")],
    );
    assert_eq!(l2_misses, Some((true, &DebugValue::Counter(1))));
    assert!(matches!(
        value("cache_size_bytes", &[("tier", "l2")]),
        Some((true, DebugValue::Gauge(_)))
    ));
}
