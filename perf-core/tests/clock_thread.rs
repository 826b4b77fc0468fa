//! The `perf-clock` thread runs only while a cache exists. Its own test binary: the thread is
//! shared by every cache in the process.

#![cfg(target_os = "linux")]

use std::time::Duration;

use perf_core::{MultiLevelCache, PerformanceConfig, Tier};

/// How many of this process's threads are named `perf-clock`.
fn clock_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "perf-clock")
        .count()
}

/// Waits (ten seconds at most) until `clock_threads()` is `expected`: the kernel names a new
/// thread from inside it, and lists a joined one until it has fully exited.
fn wait_for_clock_threads(expected: usize, why: &str) {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while clock_threads() != expected {
        assert!(std::time::Instant::now() < give_up, "{why}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn cache() -> MultiLevelCache {
    MultiLevelCache::builder(&PerformanceConfig::default())
        .build()
        .expect("valid")
}

#[test]
fn the_clock_thread_stops_with_the_last_cache_and_starts_with_the_next() {
    assert_eq!(clock_threads(), 0, "no cache, no clock thread");

    let first = cache();
    let second = cache();
    wait_for_clock_threads(1, "one thread for every cache");
    first
        .set_local("k", 1u8, Tier::L2, Some(Duration::from_secs(60)))
        .expect("stored");
    drop(first);
    assert_eq!(clock_threads(), 1, "the second cache still uses it");
    drop(second);
    wait_for_clock_threads(0, "the last cache's drop stops the thread");

    let third = cache();
    wait_for_clock_threads(1, "started again");
    third
        .set_local("k", 2u8, Tier::L2, Some(Duration::from_secs(60)))
        .expect("stored");
    assert_eq!(
        third.get_local::<u8>("k", Tier::L2).expect("ok").as_deref(),
        Some(&2)
    );
}
