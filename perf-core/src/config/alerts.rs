//! [`AlertConfig`]: the thresholds of the alert rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The alert rules' thresholds; each field's key in brackets.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `memory_usage` (`alert_memory_usage`) | 0.8 | memory alert: usage as a fraction of the limit |
/// | `cache_hit_rate` (`alert_cache_hit_rate`) | 0.7 | cache alert: hit rate below this... |
/// | `cache_min_lookups` (`alert_cache_min_lookups`) | 1000 | ...once the cache has seen this many lookups |
/// | `slow_queries` (`alert_slow_queries`) | 10 | slow-query alert: more than this many within `window` |
/// | `window` (`alert_window`) | 5m | the window of the slow-query alert |
/// | `task_failure_rate` (`alert_task_failure_rate`) | 0.1 | task alert: failed, panicked and timed-out share of finished tasks |
/// | `resource_usage` (`alert_resource_usage`) | 0.9 | CPU, system memory and disk alerts: use as a fraction |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertConfig {
    #[serde(rename = "alert_memory_usage")]
    pub memory_usage: f64,
    #[serde(rename = "alert_cache_hit_rate")]
    pub cache_hit_rate: f64,
    #[serde(rename = "alert_cache_min_lookups")]
    pub cache_min_lookups: u64,
    #[serde(rename = "alert_slow_queries")]
    pub slow_queries: u64,
    #[serde(rename = "alert_window", with = "duration_serde")]
    pub window: Duration,
    #[serde(rename = "alert_task_failure_rate")]
    pub task_failure_rate: f64,
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
