//! What the benchmarks share: timing threads that start together, and reading criterion's
//! results back to print ratios. Each benchmark uses only some of it.
#![allow(dead_code)]

use std::{path::PathBuf, sync::Barrier, time::Duration};

/// Runs `work(thread, barrier)` on `threads` threads; each sets up, waits on the barrier, then
/// times its own work. Returns the slowest thread's time.
pub(crate) fn slowest_thread(
    threads: usize,
    work: impl Fn(usize, &Barrier) -> Duration + Sync,
) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || work(thread, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

/// The median of a round's figures (the upper one of an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median, in nanoseconds, that criterion recorded for `group/bench` in this run.
pub(crate) fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let path = dir
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}
