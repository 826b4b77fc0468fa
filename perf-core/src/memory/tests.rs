//! Threshold, hysteresis, interval and hooks, with usage figures the tests choose.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;
use crate::{PerformanceOptimizer, Tier, config::MemoryConfig};

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
        memory: MemoryConfig {
            cleanup_threshold: 0.8,
            cleanup_min_interval: min_interval,
            pressure_shrink_fraction: 0.25,
            ..MemoryConfig::default()
        },
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
            shed: false,
            shrink_fraction: 0.0
        }],
        "not under pressure: nothing to shrink"
    );
}

#[test]
fn at_the_threshold_cleanup_runs_under_pressure_at_most_once_an_interval() {
    let (manager, usage, requests) = manager(Duration::from_millis(200));
    // Each cleanup gives back 2% of the limit, enough not to back off.
    let freeing = usage.clone();
    manager.register_cleanup_hook("frees", move |_| {
        freeing.set(0.85);
        "freed".into()
    });
    usage.set(0.87);
    assert!(manager.should_cleanup_memory());
    let report = manager.cleanup_memory(false).expect("over the threshold");
    assert_eq!(report.reason, CleanupReason::Threshold);
    assert!(requests.lock()[0].under_pressure);
    assert!(requests.lock()[0].shed);
    assert_eq!(manager.state().cleanup_backoff, 0, "{report:?}");
    usage.set(0.87);
    assert!(matches!(
        manager.cleanup_memory(false),
        Err(CleanupSkipped::TooSoon { .. })
    ));
    assert!(
        manager.cleanup_memory(true).is_ok(),
        "force ignores the interval"
    );
    std::thread::sleep(Duration::from_millis(250));
    usage.set(0.87);
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
        memory: MemoryConfig {
            check_interval: Duration::from_secs(5),
            ..config(Duration::ZERO).memory
        },
        ..config(Duration::ZERO)
    };
    let manager = MemoryManager::with_source(&config, usage.clone());
    let monitor = tokio::spawn(MemoryManager::run_monitor(
        manager.downgrade(),
        config.memory.check_interval,
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

/// A pressure cleanup at `now`, as the monitor runs it.
fn step(manager: &MemoryManager, now: Instant) -> CleanupReport {
    manager.check_at(now).expect("a cleanup is due")
}

#[test]
fn a_cleanup_that_frees_little_backs_off_and_stops_shedding() {
    let min = Duration::from_secs(60);
    let (manager, usage, requests) = manager(min);
    usage.set(0.9);
    let t0 = Instant::now();

    let first = step(&manager, t0);
    assert!(first.shed, "the first cleanup under pressure sheds");
    assert_eq!(
        requests.lock()[0],
        CleanupRequest {
            under_pressure: true,
            shed: true,
            shrink_fraction: 0.25
        }
    );
    assert_eq!(first.freed_bytes, 0);
    let state = manager.state();
    assert_eq!(state.cleanup_backoff, 1, "it freed nothing");
    assert_eq!(state.cleanup_interval, min * 2);
    assert!(state.next_cleanup_in > min, "{state:?}");
    assert_eq!(manager.next_cleanup_at(), Some(t0 + min * 2));

    assert!(matches!(
        manager.check_at(t0 + min * 2 - Duration::from_secs(1)),
        Err(CleanupSkipped::TooSoon { min_interval, .. }) if min_interval == min * 2
    ));

    let mut at = t0;
    let mut intervals = Vec::new();
    for _ in 0..7 {
        let next = manager.next_cleanup_at().expect("scheduled");
        intervals.push(next - at);
        at = next;
        let report = step(&manager, at);
        assert!(!report.shed, "backed off: {report:?}");
    }
    assert_eq!(
        intervals,
        [2, 4, 8, 16, 32, 32, 32].map(|n| min * n),
        "doubling up to 32 ×"
    );
    assert!(
        requests.lock()[1..]
            .iter()
            .all(|request| request.under_pressure
                && !request.shed
                && request.shrink_fraction == 0.0),
        "{:?}",
        requests.lock()
    );
    assert_eq!(manager.state().cleanup_backoff, MAX_BACKOFF_DOUBLINGS);
    assert_eq!(manager.state().cleanups, 8);

    let before = manager.usage().expect("sampled");
    let forced = manager
        .cleanup_at(&before, true, at + Duration::from_secs(1))
        .expect("forced runs whenever");
    assert!(forced.shed, "a forced cleanup under pressure sheds");
    assert_eq!(manager.state().cleanup_backoff, MAX_BACKOFF_DOUBLINGS);
}

#[test]
fn freeing_more_or_leaving_pressure_ends_the_backoff() {
    let min = Duration::from_secs(60);
    let (manager, usage, requests) = manager(min);
    usage.set(0.9);
    let t0 = Instant::now();
    step(&manager, t0);
    step(&manager, t0 + min * 2);
    assert_eq!(manager.state().cleanup_backoff, 2);

    // The program drops something of its own: this cleanup gives back 5% of the limit.
    let freeing = usage.clone();
    manager.register_cleanup_hook("frees", move |_| {
        freeing.set(0.85);
        "freed".into()
    });
    let t1 = t0 + min * 6;
    let report = step(&manager, t1);
    assert!(!report.shed, "still backed off when it ran");
    assert!(report.freed_bytes >= LIMIT / 20 - 1, "{report:?}");
    assert_eq!(manager.state().cleanup_backoff, 0);
    assert_eq!(manager.next_cleanup_at(), Some(t1 + min));

    usage.set(0.9);
    let report = step(&manager, t1 + min);
    assert!(report.shed, "shedding again");
    assert!(requests.lock().last().expect("asked").shed);

    // Back off again, then usage leaves pressure.
    let mut backed_off = Backoff::default();
    backed_off.after_cleanup(0, LIMIT, false);
    manager.inner.state.lock().backoff = backed_off;
    usage.set(0.76);
    assert!(
        manager.should_cleanup_memory(),
        "within the hysteresis band"
    );
    assert_eq!(manager.state().cleanup_backoff, 1);
    usage.set(0.74);
    assert!(!manager.should_cleanup_memory());
    assert_eq!(manager.state().cleanup_backoff, 0, "out of pressure");
}

#[test]
fn each_action_says_what_it_freed() {
    let (manager, usage, _) = manager(Duration::ZERO);
    let (halving, growing) = (usage.clone(), usage.clone());
    manager.register_cleanup_hook("halves", move |_| {
        halving.set(0.45);
        "halved".into()
    });
    manager.register_cleanup_hook("grows", move |_| {
        growing.set(0.5);
        "grew".into()
    });
    usage.set(0.9);
    let report = manager.cleanup_memory(true).expect("forced");
    let freed: Vec<(&str, u64)> = report
        .actions
        .iter()
        .map(|action| (action.name.as_str(), action.freed_bytes))
        .collect();
    let rss = |fraction: f64| (fraction * LIMIT as f64) as u64;
    assert_eq!(
        freed[..3],
        [
            ("recorder", 0),
            ("halves", rss(0.9) - rss(0.45)),
            ("grows", 0)
        ]
    );
    assert!(
        freed[3..].iter().all(|&(_, bytes)| bytes == 0),
        "the allocator's steps, with RSS unchanged: {freed:?}"
    );
    assert_eq!(report.rss_after_bytes, rss(0.5));
    assert_eq!(report.freed_bytes, rss(0.9) - rss(0.5));
}

/// This process's memory as first sampled against `limit`, held there: a working set that
/// cleanups cannot shrink (on the ads back end RSS stayed at 11.7 MB through 14 cleanups),
/// and a test that does not depend on what the tests running beside it free.
struct Baseline(MemoryUsage);

impl UsageSource for Baseline {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        Ok(self.0.clone())
    }
}

fn below_the_baseline() -> PerformanceConfig {
    PerformanceConfig {
        memory: MemoryConfig {
            limit_bytes: Some(1 << 20),
            ..config(Duration::from_secs(60)).memory
        },
        ..config(Duration::from_secs(60))
    }
}

#[test]
fn with_a_limit_below_the_baseline_the_cache_keeps_its_entries_after_the_first_shed() {
    let config = below_the_baseline();
    let baseline = SystemUsage::new(config.memory.limit_bytes)
        .sample()
        .expect("sampled");
    assert!(
        baseline.usage_fraction > 1.0,
        "over the limit: {baseline:?}"
    );
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .memory_source(Baseline(baseline))
        .build()
        .expect("valid");
    let cache = optimizer.cache();
    for i in 0..1_000u64 {
        cache
            .set_l1_local(&format!("k{i}"), i, None)
            .expect("stored");
    }
    let l1 = || cache.stats().l1.entries.unwrap_or(0);
    assert_eq!(l1(), 1_000);
    let memory = optimizer.memory();

    let t0 = Instant::now();
    let first = step(memory, t0);
    assert!(first.shed);
    assert!(first.actions[0].detail.contains("dropped"), "{first:?}");
    let kept = l1();
    assert!(
        (600..1_000).contains(&kept),
        "the first cleanup shed some: {kept}"
    );

    let mut at = t0;
    let mut intervals = Vec::new();
    for _ in 0..6 {
        let next = memory.next_cleanup_at().expect("scheduled");
        intervals.push((next - at).as_secs() / 60);
        at = next;
        let report = step(memory, at);
        assert!(!report.shed);
        assert_eq!(
            report.actions[0].detail,
            "swept 0 expired entries; shed nothing (cleanups backed off)"
        );
        assert_eq!(l1(), kept, "the cache keeps its entries");
    }
    assert_eq!(intervals, [2, 4, 8, 16, 32, 32], "minutes apart, doubling");
    assert_eq!(memory.state().cleanups, 7);
}

#[test]
fn with_a_limit_below_the_baseline_each_step_is_measured() {
    let optimizer = PerformanceOptimizer::builder()
        .config(below_the_baseline())
        .build()
        .expect("valid");
    for i in 0..1_000u64 {
        optimizer
            .cache()
            .set_l1_local(&format!("k{i}"), i, None)
            .expect("stored");
    }
    let report = optimizer
        .memory()
        .cleanup_memory(false)
        .expect("over the limit");
    assert!(report.shed, "{report:?}");
    assert_eq!(report.actions[0].name, "cache");
    assert!(optimizer.cache().stats().l1.entries < Some(1_000));
    let steps: u64 = report.actions.iter().map(|action| action.freed_bytes).sum();
    assert!(
        steps >= report.freed_bytes,
        "each step's change in RSS adds up to at least the whole: {report:?}"
    );
}

/// A source that cannot sample.
struct Unreadable;

impl UsageSource for Unreadable {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "no /proc",
        ))
    }
}

#[test]
fn a_failed_sample_keeps_its_error_as_the_source() {
    let manager = MemoryManager::with_source(&config(Duration::ZERO), Unreadable);
    let skipped = manager.cleanup_memory(true).expect_err("no sample");
    assert!(skipped.to_string().contains("no /proc"), "{skipped}");
    let source = std::error::Error::source(&skipped).expect("the sampler's error");
    let io = source
        .downcast_ref::<Arc<std::io::Error>>()
        .expect("an I/O error");
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}
