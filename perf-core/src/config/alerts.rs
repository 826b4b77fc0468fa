//! [`AlertConfig`]: the thresholds of the alert rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The thresholds of the alert rules ([`alerts`](crate::alerts::alerts)). Each field's
/// documentation starts with its key (in TOML, and upper-cased after `PERF_` in the
/// environment) and its default. Fractions are in `(0, 1]`.
///
/// A rule over a fraction raises a warning at its threshold and turns critical half-way from
/// the threshold to 1 (at 0.9 for a threshold of 0.8).
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AlertConfig {
    /// `alert_memory_usage`, default 0.8. The memory alert fires when the process's RSS
    /// reaches this fraction of its memory limit (`memory_limit_bytes`, else the cgroup's,
    /// else physical memory).
    #[serde(rename = "alert_memory_usage")]
    pub memory_usage: f64,
    /// `alert_cache_hit_rate`, default 0.7. The cache alert fires when the hit rate is below
    /// this fraction (critical below half of it), once `cache_min_lookups` lookups were made.
    #[serde(rename = "alert_cache_hit_rate")]
    pub cache_hit_rate: f64,
    /// `alert_cache_min_lookups`, default 1000. L1 lookups (hits and misses) needed before the
    /// hit rate is judged, by the cache alert and the recommendation to grow L1.
    #[serde(rename = "alert_cache_min_lookups")]
    pub cache_min_lookups: u64,
    /// `alert_slow_queries`, default 10. The slow-query alert fires when more than this many
    /// queries over `slow_query_threshold` were logged within `window` (critical past twice
    /// as many).
    #[serde(rename = "alert_slow_queries")]
    pub slow_queries: u64,
    /// `alert_window`, default 5 min. How far back the slow-query alert counts. Must be above
    /// zero.
    #[serde(rename = "alert_window", with = "duration_serde")]
    pub window: Duration,
    /// `alert_task_failure_rate`, default 0.1. The task alert fires when this fraction of
    /// finished tasks failed, panicked or timed out (cancelled ones are not counted).
    #[serde(rename = "alert_task_failure_rate")]
    pub task_failure_rate: f64,
    /// `alert_resource_usage`, default 0.9. The CPU, system-memory and disk alerts fire when
    /// the machine's use of each reaches this fraction.
    #[serde(rename = "alert_resource_usage")]
    pub resource_usage: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            memory_usage: 0.8,
            cache_hit_rate: 0.7,
            cache_min_lookups: 1000,
            slow_queries: 10,
            window: Duration::from_secs(300),
            task_failure_rate: 0.1,
            resource_usage: 0.9,
        }
    }
}

impl ConfigSection for AlertConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        for (field, value) in [
            ("alert_memory_usage", self.memory_usage),
            ("alert_cache_hit_rate", self.cache_hit_rate),
            ("alert_task_failure_rate", self.task_failure_rate),
            ("alert_resource_usage", self.resource_usage),
        ] {
            require(
                bad,
                value > 0.0 && value <= 1.0,
                field,
                "must be a fraction in (0, 1]",
            );
        }
        require(
            bad,
            !self.window.is_zero(),
            "alert_window",
            "must be greater than zero",
        );
    }
}
