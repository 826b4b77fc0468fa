//! Alerts and recommendations from a running optimizer's real statistics.

use std::time::Duration;

use perf::{
    PerformanceConfig, PerformanceOptimizer,
    alerts::{AlertKind, Severity},
    memory::{LimitSource, MemoryUsage, UsageSource},
};

/// Memory at 95% of a 1 GiB limit.
struct NearlyFull;

impl UsageSource for NearlyFull {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        Ok(MemoryUsage {
            rss_bytes: 973 << 20,
            virtual_bytes: 2 << 30,
            allocator: None,
            tracked: None,
            system_total_bytes: 8 << 30,
            system_available_bytes: 4 << 30,
            limit_bytes: 1 << 30,
            limit_source: LimitSource::Configured,
            usage_fraction: 0.95,
        })
    }
}

#[tokio::test]
async fn a_struggling_service_gets_alerts_and_recommendations() {
    let mut config = PerformanceConfig::default();
    config.cache.max_size = 50;
    config.query.slow_threshold = Duration::from_millis(1);
    config.alerts.cache_min_lookups = 100;
    config.alerts.slow_queries = 2;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .memory_source(NearlyFull)
        .build()
        .expect("valid");

    // A working set four times L1's size: every read misses and evicts.
    let cache = optimizer.cache();
    for round in 0..3 {
        for key in 0..200u32 {
            let value = cache
                .get_or_load_l1(&format!("k{key}"), None, || async {
                    Ok::<_, perf::Error>(key + round)
                })
                .await;
            assert!(value.is_ok());
        }
    }
    // Slow queries, and failing tasks.
    for _ in 0..4 {
        optimizer.query().record(
            "select",
            Some("SELECT * FROM ads"),
            Duration::from_millis(5),
            false,
            None,
        );
    }
    let tasks = optimizer.tasks();
    let handles = tasks
        .batch_submit((0..10).map(|i| async move { if i < 5 { Err("db down") } else { Ok(i) } }))
        .await
        .expect("accepted");
    tasks.wait_for_tasks(handles, None).await;

    let alerts = optimizer.alerts();
    let kinds: Vec<_> = alerts.iter().map(|alert| alert.kind).collect();
    for kind in [
        AlertKind::MemoryUsage,
        AlertKind::CacheHitRate,
        AlertKind::SlowQueries,
        AlertKind::TaskFailureRate,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} in {alerts:#?}");
    }
    assert_eq!(alerts[0].severity, Severity::Critical, "most severe first");
    let task_alert = alerts
        .iter()
        .find(|a| a.kind == AlertKind::TaskFailureRate)
        .expect("raised");
    assert_eq!((task_alert.observed, task_alert.threshold), (0.5, 0.1));

    let recommended: Vec<_> = optimizer.recommendations().iter().map(|r| r.kind).collect();
    for kind in [
        "raise_cache_max_size",
        "review_slow_queries",
        "reduce_memory",
    ] {
        assert!(recommended.contains(&kind), "{kind} in {recommended:?}");
    }
    assert!(cache.stats().l1.evictions > 0);
}
