//! [`MemoryConfig`]: the memory manager's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The memory manager's settings ([`MemoryManager`](crate::memory::MemoryManager)). Each
/// field's documentation starts with its key (in TOML, and upper-cased after `PERF_` in the
/// environment) and its default.
///
/// `memory_cleanup_threshold`, `memory_cleanup_min_interval` and
/// `memory_pressure_shrink_fraction` can change at run time ([`HOT_FIELDS`](crate::HOT_FIELDS)),
/// from the next sample and cleanup; the rest need a restart.
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// `memory_cleanup_threshold`, default 0.8. The memory monitor cleans up while the
    /// process's RSS is at or over this fraction of the limit. In `(0, 1]`.
    #[serde(rename = "memory_cleanup_threshold")]
    pub cleanup_threshold: f64,
    /// `memory_limit_bytes`, default none. The limit usage is measured against, in bytes;
    /// none means the process's cgroup limit (a container's), else the machine's physical
    /// memory. Above zero when set.
    #[serde(rename = "memory_limit_bytes")]
    pub limit_bytes: Option<u64>,
    /// `memory_check_interval`, default 30 s. How often the memory monitor samples usage,
    /// publishes `memory_usage_bytes` and decides whether to clean up. Must be above zero.
    #[serde(rename = "memory_check_interval", with = "duration_serde")]
    pub check_interval: Duration,
    /// `memory_cleanup_min_interval`, default 60 s. Cleanups not forced start at least this
    /// far apart; up to 32 times as far while backed off because they freed little.
    #[serde(rename = "memory_cleanup_min_interval", with = "duration_serde")]
    pub cleanup_min_interval: Duration,
    /// `memory_pressure_shrink_fraction`, default 0.25. The share of L1's and L2's entries a
    /// cleanup under pressure asks the cache to drop ([`CleanupRequest::shrink_fraction`]);
    /// 0 drops only expired entries. In `[0, 1)`.
    ///
    /// [`CleanupRequest::shrink_fraction`]: crate::memory::CleanupRequest::shrink_fraction
    #[serde(rename = "memory_pressure_shrink_fraction")]
    pub pressure_shrink_fraction: f64,
    /// `allocation_tracking_enabled`, default true. With
    /// [`TrackingAllocator`](crate::memory::TrackingAllocator) as the global allocator, count
    /// allocations. False when `install()` runs stops counting for the rest of the process
    /// ([`disable_tracking`](crate::memory::disable_tracking)); without that allocator it has
    /// no effect. Also read under the seed's name, `tracemalloc_enabled`.
    #[serde(alias = "tracemalloc_enabled")]
    pub allocation_tracking_enabled: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            cleanup_threshold: 0.8,
            limit_bytes: None,
            check_interval: Duration::from_secs(30),
            cleanup_min_interval: Duration::from_secs(60),
            pressure_shrink_fraction: 0.25,
            allocation_tracking_enabled: true,
        }
    }
}

impl ConfigSection for MemoryConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        require(
            bad,
            self.cleanup_threshold > 0.0 && self.cleanup_threshold <= 1.0,
            "memory_cleanup_threshold",
            "must be a fraction in (0, 1]",
        );
        require(
            bad,
            self.limit_bytes != Some(0),
            "memory_limit_bytes",
            "must be greater than zero when set",
        );
        require(
            bad,
            !self.check_interval.is_zero(),
            "memory_check_interval",
            "must be greater than zero",
        );
        require(
            bad,
            (0.0..1.0).contains(&self.pressure_shrink_fraction),
            "memory_pressure_shrink_fraction",
            "must be a fraction in [0, 1)",
        );
    }
}
