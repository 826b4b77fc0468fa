//! [`CacheConfig`]: the multi-level cache's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The cache's settings. Each field's key (in TOML, and after `PERF_` in the environment) is
/// given in brackets.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `enabled` (`cache_enabled`) | true | false: `get_or_load` and `#[cache_result]` call straight through (changeable at run time) |
/// | `ttl` (`cache_ttl`) | 1h | TTL of cache entries stored without an explicit one |
/// | `max_size` (`cache_max_size`) | 10 000 | L1 capacity in entries |
/// | `l2_max_bytes` | 128 MiB | L2 capacity in bytes (keys, encoded values, per-entry overhead) |
/// | `compression_threshold_bytes` | 512 | encoded values larger than this are zstd-compressed |
/// | `zstd_level` | 3 | zstd compression level |
/// | `zstd_compress_literals` | false | also Huffman-code literals: ~1/6 smaller values, ~1/4 slower L2 hits |
/// | `max_key_bytes` | 1024 | longer keys are refused |
/// | `max_value_bytes` | 4 MiB | larger serialized values are refused |
/// | `sweep_interval` (`cache_sweep_interval`) | 30s | how often expired entries are swept out of L1 and L2 |
/// | `fail_safe_max` (`cache_fail_safe_max`) | 0 (off) | loads keep values this long past their TTL, served as stale when a reload fails or times out |
/// | `fail_safe_throttle` (`cache_fail_safe_throttle`) | 30s | a stale value served after a failure is served as fresh this long before the source is asked again |
/// | `soft_timeout` (`cache_soft_timeout`) | 0 (off) | with a stale value at hand, a load's callers get it after this long while the load goes on |
/// | `hard_timeout` (`cache_hard_timeout`) | 0 (off) | a load's callers stop waiting after this long: stale value, else `Error::LoaderTimeout` |
/// | `eager_refresh` (`cache_eager_refresh`) | 0 (off) | a value read after this fraction of its TTL is reloaded in the background |
/// | `ttl_jitter` (`cache_ttl_jitter`) | 0 | each TTL is shortened by a random share of up to this fraction |
/// | `failure_ttl` (`cache_failure_ttl`) | 0 (off) | a failed load's error is handed to the callers of the next this-long without a reload |
///
/// `l2_max_bytes` must hold the largest entry (`max_key_bytes + max_value_bytes` plus the
/// encoding's header and L2's per-entry overhead); the cache checks that when it is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    #[serde(rename = "cache_enabled")]
    pub enabled: bool,
    #[serde(rename = "cache_ttl", with = "duration_serde")]
    pub ttl: Duration,
    #[serde(rename = "cache_max_size")]
    pub max_size: u64,
    pub l2_max_bytes: u64,
    pub compression_threshold_bytes: u64,
    pub zstd_level: i32,
    pub zstd_compress_literals: bool,
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
    #[serde(rename = "cache_sweep_interval", with = "duration_serde")]
    pub sweep_interval: Duration,
    #[serde(rename = "cache_fail_safe_max", with = "duration_serde")]
    pub fail_safe_max: Duration,
    #[serde(rename = "cache_fail_safe_throttle", with = "duration_serde")]
    pub fail_safe_throttle: Duration,
    #[serde(rename = "cache_soft_timeout", with = "duration_serde")]
    pub soft_timeout: Duration,
    #[serde(rename = "cache_hard_timeout", with = "duration_serde")]
    pub hard_timeout: Duration,
    #[serde(rename = "cache_eager_refresh")]
    pub eager_refresh: f64,
    #[serde(rename = "cache_ttl_jitter")]
    pub ttl_jitter: f64,
    #[serde(rename = "cache_failure_ttl", with = "duration_serde")]
    pub failure_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(3600),
            max_size: 10_000,
            l2_max_bytes: 128 * 1024 * 1024,
            compression_threshold_bytes: 512,
            zstd_level: 3,
            zstd_compress_literals: false,
            max_key_bytes: 1024,
            max_value_bytes: 4 * 1024 * 1024,
            sweep_interval: Duration::from_secs(30),
            fail_safe_max: Duration::ZERO,
            fail_safe_throttle: Duration::from_secs(30),
            soft_timeout: Duration::ZERO,
            hard_timeout: Duration::ZERO,
            eager_refresh: 0.0,
            ttl_jitter: 0.0,
            failure_ttl: Duration::ZERO,
        }
    }
}

impl ConfigSection for CacheConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        require(
            bad,
            !self.ttl.is_zero(),
            "cache_ttl",
            "must be greater than zero",
        );
        require(
            bad,
            self.max_size > 0,
            "cache_max_size",
            "must be at least 1",
        );
        let levels = zstd::compression_level_range();
        require(
            bad,
            levels.contains(&self.zstd_level),
            "zstd_level",
            format!("must be within {}..={}", levels.start(), levels.end()),
        );
        require(
            bad,
            self.max_key_bytes > 0,
            "max_key_bytes",
            "must be at least 1",
        );
        require(
            bad,
            self.max_key_bytes <= u64::from(u16::MAX),
            "max_key_bytes",
            format!("must be at most {}", u16::MAX),
        );
        require(
            bad,
            self.max_value_bytes > 0,
            "max_value_bytes",
            "must be at least 1",
        );
        require(
            bad,
            self.max_value_bytes <= u64::from(u32::MAX),
            "max_value_bytes",
            format!("must be at most {} (4 GiB)", u32::MAX),
        );
        require(
            bad,
            !self.sweep_interval.is_zero(),
            "cache_sweep_interval",
            "must be greater than zero",
        );
        require(
            bad,
            !self.fail_safe_throttle.is_zero(),
            "cache_fail_safe_throttle",
            "must be greater than zero",
        );
        for (field, value) in [
            ("cache_eager_refresh", self.eager_refresh),
            ("cache_ttl_jitter", self.ttl_jitter),
        ] {
            require(
                bad,
                (0.0..1.0).contains(&value),
                field,
                "must be a fraction in [0, 1) (0: off)",
            );
        }
        require(
            bad,
            self.hard_timeout.is_zero() || self.soft_timeout <= self.hard_timeout,
            "cache_soft_timeout",
            format!(
                "must not be above cache_hard_timeout ({:?})",
                self.hard_timeout
            ),
        );
    }
}
