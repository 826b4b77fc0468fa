//! What every benchmark shares: reading criterion's results back to print ratios.

use std::path::PathBuf;

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
