//! [`QueryConfig`] and [`MonitorConfig`]: the query optimizer's and the operation monitor's
//! settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The query optimizer's settings ([`QueryOptimizer`](crate::query::QueryOptimizer)). Each
/// field's documentation starts with its key (in TOML, and upper-cased after `PERF_` in the
/// environment) and its default.
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct QueryConfig {
    /// `slow_query_threshold`, default 1 s. A query that takes at least this long is logged
    /// (a `tracing` warning), kept in the slow-query log (under its shape, or its query type
    /// when timed without SQL) and counted by the slow-query alert. Changeable at run time
    /// ([`HOT_FIELDS`](crate::HOT_FIELDS)).
    #[serde(rename = "slow_query_threshold", with = "duration_serde")]
    pub slow_threshold: Duration,
    /// `query_stats_max`, default 5000. How many query shapes keep statistics; a new shape
    /// arriving when it is full evicts the least-called twentieth. At least 1.
    #[serde(rename = "query_stats_max")]
    pub stats_max: u64,
    /// `database_pool_size`, default 10: the most connections the application's database
    /// pool should open. perf opens none itself; the application reads this when it builds
    /// its pool, and [`watch_pool`](crate::query::QueryOptimizer::watch_pool) reports the
    /// pool's own figure. At least 1; read at start only.
    #[serde(rename = "database_pool_size")]
    pub pool_size: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_secs(1),
            stats_max: 5000,
            pool_size: 10,
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
        require(
            bad,
            self.pool_size > 0,
            "database_pool_size",
            "must be at least 1",
        );
    }
}

/// The operation monitor's settings (`#[performance_monitor]`,
/// [`performance_context`](crate::performance_context)). Each field's documentation starts
/// with its key (in TOML, and upper-cased after `PERF_` in the environment) and its default.
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// `profiling_enabled`, default false. Each `#[performance_monitor]` call also runs
    /// inside a `tracing` span named after its operation, for span-based profilers.
    /// Changeable at run time ([`HOT_FIELDS`](crate::HOT_FIELDS)).
    pub profiling_enabled: bool,
    /// `metrics_prefix`, default empty (none). Put before the name of every metric perf
    /// emits (`ads_` gives `ads_cache_hits_total`): `[a-zA-Z_:][a-zA-Z0-9_:]*`. Process-wide
    /// and set once, by `install()` ([`crate::metrics::set_prefix`]); not changeable at run
    /// time.
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
