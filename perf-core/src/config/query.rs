//! [`QueryConfig`] and [`MonitorConfig`]: the query optimizer's and the operation monitor's
//! settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The query optimizer's settings; each field's key in brackets.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `slow_threshold` (`slow_query_threshold`) | 1s | queries slower than this are logged as slow |
/// | `stats_max` (`query_stats_max`) | 5000 | query shapes with statistics; the least called are evicted beyond |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    #[serde(rename = "slow_query_threshold", with = "duration_serde")]
    pub slow_threshold: Duration,
    #[serde(rename = "query_stats_max")]
    pub stats_max: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_secs(1),
            stats_max: 5000,
        }
    }
}

impl ConfigSection for QueryConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        require(
            bad,
            self.stats_max > 0,
            "query_stats_max",
            "must be at least 1",
        );
    }
}

/// The operation monitor's settings.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `profiling_enabled` | false | `#[performance_monitor]` calls run inside a `tracing` span named after the operation, for span-based profilers (changeable at run time) |
/// | `metrics_prefix` | `""` | put before the name of every metric perf emits (`ads_` gives `ads_cache_hits_total`); set by `install()`, process-wide ([`crate::metrics::set_prefix`]) |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    pub profiling_enabled: bool,
    pub metrics_prefix: String,
}

impl ConfigSection for MonitorConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        if let Err(error) = crate::metrics::check_prefix(&self.metrics_prefix) {
            bad.push(FieldError {
                field: "metrics_prefix",
                reason: error.to_string(),
            });
        }
    }
}
