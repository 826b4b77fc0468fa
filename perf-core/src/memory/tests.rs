//! Threshold, hysteresis, interval and hooks, with usage figures the tests choose.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;
use crate::{PerformanceOptimizer, Tier};

const LIMIT: u64 = 1 << 30;

/// Reports whatever usage fraction the test last set.
#[derive(Clone, Default)]
struct Scripted(Arc<AtomicU64>);

impl Scripted {
    fn set(&self, fraction: f64) {
        self.0.store(fraction.to_bits(), Ordering::SeqCst);
    }
}

impl UsageSource for Scripted {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        let usage_fraction = f64::from_bits(self.0.load(Ordering::SeqCst));
        let rss_bytes = (usage_fraction * LIMIT as f64) as u64;
        Ok(MemoryUsage {
            rss_bytes,
            virtual_bytes: rss_bytes * 2,
            allocator: None,
            tracked: None,
            system_total_bytes: LIMIT * 4,
            system_available_bytes: LIMIT * 2,
            limit_bytes: LIMIT,
            limit_source: LimitSource::Configured,
            usage_fraction,
        })
    }
}

fn config(min_interval: Duration) -> PerformanceConfig {
    PerformanceConfig {
        memory_cleanup_threshold: 0.8,
        memory_cleanup_min_interval: min_interval,
        memory_pressure_shrink_fraction: 0.25,
        ..PerformanceConfig::default()
    }
}

fn manager(min_interval: Duration) -> (MemoryManager, Scripted, Arc<Mutex<Vec<CleanupRequest>>>) {
    let usage = Scripted::default();
    let manager = MemoryManager::with_source(&config(min_interval), usage.clone());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    manager.register_cleanup_hook("recorder", move |request| {
        seen.lock().push(*request);
        "recorded".into()
    });
    (manager, usage, requests)
}

#[test]
fn below_the_threshold_only_a_forced_cleanup_runs() {
    let (manager, usage, requests) = manager(Duration::ZERO);
    usage.set(0.5);
    assert!(!manager.should_cleanup_memory());
    assert!(matches!(
        manager.cleanup_memory(false),
        Err(CleanupSkipped::BelowThreshold { .. })
    ));
    assert!(requests.lock().is_empty(), "no hook ran");

    let report = manager.cleanup_memory(true).expect("forced");
    assert_eq!(report.reason, CleanupReason::Forced);
    assert_eq!(report.rss_before_bytes, LIMIT / 2);
    assert_eq!(report.actions[0].name, "recorder");
    assert_eq!(report.actions[0].detail, "recorded");
    assert!(
        report.actions.len() > 1 || !cfg!(all(target_os = "linux", target_env = "gnu")),
        "the allocator was asked too: {report:?}"
    );
    assert_eq!(
        *requests.lock(),
        [CleanupRequest {
            under_pressure: false,
            shrink_fraction: 0.25
        }],
        "not under pressure: nothing to shrink"
    );
}

#[test]
fn at_the_threshold_cleanup_runs_under_pressure_at_most_once_an_interval() {
    let (manager, usage, requests) = manager(Duration::from_millis(200));
    usage.set(0.85);
    assert!(manager.should_cleanup_memory());
    let report = manager.cleanup_memory(false).expect("over the threshold");
    assert_eq!(report.reason, CleanupReason::Threshold);
    assert!(requests.lock()[0].under_pressure);
    assert!(matches!(
        manager.cleanup_memory(false),
        Err(CleanupSkipped::TooSoon { .. })
    ));
    assert!(
        manager.cleanup_memory(true).is_ok(),
        "force ignores the interval"
    );
    std::thread::sleep(Duration::from_millis(250));
    assert!(
        manager.cleanup_memory(false).is_ok(),
        "the interval has passed"
    );
    assert_eq!(requests.lock().len(), 3);
    assert_eq!(manager.state().cleanups, 3);
}

#[test]
fn pressure_holds_until_usage_falls_below_the_hysteresis_band() {
    let (manager, usage, _) = manager(Duration::ZERO);
    let steps = [
        (0.79, false),
        (0.80, true),
        (0.78, true),
        (0.76, true),
        (0.74, false),
        (0.79, false),
        (0.90, true),
    ];
    for (fraction, pressure) in steps {
        usage.set(fraction);
        assert_eq!(
            manager.should_cleanup_memory(),
            pressure,
            "at {fraction} after the steps before"
        );
        assert_eq!(manager.state().under_pressure, pressure);
    }
}

#[test]
fn cleanups_are_counted_by_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (manager, usage, _) = manager(Duration::ZERO);
    usage.set(0.9);
    ::metrics::with_local_recorder(&recorder, || {
        manager.cleanup_memory(false).expect("threshold");
        manager.cleanup_memory(true).expect("forced");
        manager.cleanup_memory(true).expect("forced");
    });
    let counts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == crate::metrics::MEMORY_CLEANUPS_TOTAL)
        .map(|(key, _, _, value)| {
            let reason = key
                .key()
                .labels()
                .next()
                .expect("a reason")
                .value()
                .to_owned();
            let DebugValue::Counter(n) = value else {
                panic!("a counter")
            };
            (reason, n)
        })
        .collect();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.contains(&("threshold".into(), 1)));
    assert!(counts.contains(&("forced".into(), 2)));
}

#[test]
fn usage_metrics_are_published_by_type() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let usage = Scripted::default();
    usage.set(0.5);
    let sample = usage.sample().expect("sampled");
    ::metrics::with_local_recorder(&recorder, || MemoryManager::publish_metrics(&sample));
    let gauges: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(bytes) => {
                let kind = key.key().labels().next()?.value().to_owned();
                Some((kind, bytes.into_inner()))
            }
            _ => None,
        })
        .collect();
    assert!(
        gauges.contains(&("rss".into(), (LIMIT / 2) as f64)),
        "{gauges:?}"
    );
    assert!(gauges.contains(&("limit".into(), LIMIT as f64)));
    assert!(gauges.iter().any(|(kind, _)| kind == "system_available"));
}

#[tokio::test]
async fn under_pressure_the_optimizer_sheds_a_share_of_the_cache() {
    let usage = Scripted::default();
    let optimizer = PerformanceOptimizer::builder()
        .config(config(Duration::ZERO))
        .memory_source(usage.clone())
        .build()
        .expect("valid");
    let cache = optimizer.cache();
    for i in 0..400 {
        cache
            .set(&format!("k{i}"), vec![i; 64], Tier::L2, None)
            .await
            .expect("stored");
    }
    let stats = cache.stats();
    let (l1_before, l2_before) = (stats.l1.entries.unwrap_or(0), stats.l2.entries.unwrap_or(0));
    assert_eq!((l1_before, l2_before), (400, 400));

    usage.set(0.5);
    let calm = optimizer.memory().cleanup_memory(true).expect("forced");
    assert!(
        calm.actions[0].detail.starts_with("swept 0 expired"),
        "{calm:?}"
    );
    assert_eq!(
        cache.stats().l1.entries,
        Some(400),
        "nothing shed without pressure"
    );

    usage.set(0.95);
    let report = optimizer.memory().cleanup_memory(false).expect("pressure");
    assert_eq!(report.actions[0].name, "cache");
    let stats = cache.stats();
    let (l1, l2) = (stats.l1.entries.unwrap_or(0), stats.l2.entries.unwrap_or(0));
    assert!(
        (250..=330).contains(&l1),
        "about a quarter of L1 shed: {l1}"
    );
    assert!(
        (250..=330).contains(&l2),
        "about a quarter of L2 shed: {l2}"
    );
    assert!(report.actions[0].detail.contains("dropped"), "{report:?}");

    cache
        .set("after", 1u8, Tier::L2, None)
        .await
        .expect("stored");
    assert!(cache.l2_capacity_bytes() > 0);
    assert_eq!(
        cache.get::<u8>("after", Tier::L2).await.expect("ok"),
        Some(Arc::new(1)),
        "capacity restored after shedding"
    );
}

#[tokio::test(start_paused = true)]
async fn the_monitor_samples_and_cleans_up_over_the_threshold() {
    let usage = Scripted::default();
    usage.set(0.9);
    let config = PerformanceConfig {
        memory_check_interval: Duration::from_secs(5),
        ..config(Duration::ZERO)
    };
    let manager = MemoryManager::with_source(&config, usage.clone());
    let monitor = tokio::spawn(MemoryManager::run_monitor(
        manager.downgrade(),
        config.memory_check_interval,
    ));
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if manager.state().cleanups >= 2 {
            break;
        }
    }
    let state = manager.state();
    assert!(state.cleanups >= 2, "{state:?}");
    assert!(state.under_pressure);
    assert_eq!(
        state.last_sample.map(|sample| sample.usage_fraction),
        Some(0.9)
    );
    drop(manager);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(monitor.is_finished(), "the monitor ends with its manager");
}
