//! [`MemoryConfig`]: the memory manager's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The memory manager's settings; each field's key in brackets.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `cleanup_threshold` (`memory_cleanup_threshold`) | 0.8 | fraction of the memory limit at which cleanup runs |
/// | `limit_bytes` (`memory_limit_bytes`) | none | memory limit; none means the cgroup limit, else physical memory |
/// | `check_interval` (`memory_check_interval`) | 30s | how often the memory monitor samples |
/// | `cleanup_min_interval` (`memory_cleanup_min_interval`) | 60s | cleanups not forced run at most this often |
/// | `pressure_shrink_fraction` (`memory_pressure_shrink_fraction`) | 0.25 | share of L1 and L2 entries a cleanup under pressure drops |
/// | `allocation_tracking_enabled` | true | with `TrackingAllocator` as the global allocator, count allocations; false at `install()` stops counting for good |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryConfig {
    #[serde(rename = "memory_cleanup_threshold")]
    pub cleanup_threshold: f64,
    #[serde(rename = "memory_limit_bytes")]
    pub limit_bytes: Option<u64>,
    #[serde(rename = "memory_check_interval", with = "duration_serde")]
    pub check_interval: Duration,
    #[serde(rename = "memory_cleanup_min_interval", with = "duration_serde")]
    pub cleanup_min_interval: Duration,
    #[serde(rename = "memory_pressure_shrink_fraction")]
    pub pressure_shrink_fraction: f64,
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
