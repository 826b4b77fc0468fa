//! [`PerformanceConfig`]: every knob of every component, with defaults and validation.
//!
//! Load order is defaults, then a TOML file, then `PERF_*` environment variables, each layer
//! overriding the one before. Durations are written either as whole seconds (`3600`) or as a
//! human-readable string (`"1h"`, `"30m"`, `"250ms"`).

use std::{fmt, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The configuration of a [`PerformanceOptimizer`](crate::PerformanceOptimizer).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `cache_enabled` | true | false: `get_or_load` and `#[cache_result]` call straight through (changeable at run time) |
/// | `cache_ttl` | 1h | TTL of cache entries stored without an explicit one |
/// | `cache_max_size` | 10 000 | L1 capacity in entries |
/// | `l2_max_bytes` | 128 MiB | L2 capacity in bytes (keys, encoded values, per-entry overhead) |
/// | `compression_threshold_bytes` | 512 | encoded values larger than this are zstd-compressed |
/// | `zstd_level` | 3 | zstd compression level |
/// | `zstd_compress_literals` | false | also Huffman-code literals: ~1/6 smaller values, ~1/4 slower L2 hits |
/// | `max_key_bytes` | 1024 | longer keys are refused |
/// | `max_value_bytes` | 4 MiB | larger serialized values are refused |
/// | `cache_sweep_interval` | 30s | how often expired entries are swept out of L1 and L2 |
/// | `cache_fail_safe_max` | 0 (off) | loads keep values this long past their TTL, served as stale when a reload fails or times out |
/// | `cache_fail_safe_throttle` | 30s | a stale value served after a failure is served as fresh this long before the source is asked again |
/// | `cache_soft_timeout` | 0 (off) | with a stale value at hand, a load's callers get it after this long while the load goes on |
/// | `cache_hard_timeout` | 0 (off) | a load's callers stop waiting after this long: stale value, else `Error::LoaderTimeout` |
/// | `cache_eager_refresh` | 0 (off) | a value read after this fraction of its TTL is reloaded in the background |
/// | `cache_ttl_jitter` | 0 | each TTL is shortened by a random share of up to this fraction |
/// | `cache_failure_ttl` | 0 (off) | a failed load's error is handed to the callers of the next this-long without a reload |
/// | `max_workers` | 10 | async tasks the task manager runs at once (changeable at run time) |
/// | `max_queued` | 10 000 | tasks waiting for a worker before `submit` waits and `try_submit` fails |
/// | `max_blocking_workers` | 4 | blocking (CPU-bound) tasks the task manager runs at once |
/// | `task_timeout` | 30s | default timeout of a managed task |
/// | `memory_cleanup_threshold` | 0.8 | fraction of the memory limit at which cleanup runs |
/// | `memory_limit_bytes` | none | memory limit; none means the cgroup limit, else physical memory |
/// | `memory_check_interval` | 30s | how often the memory monitor samples |
/// | `memory_cleanup_min_interval` | 60s | cleanups not forced run at most this often |
/// | `memory_pressure_shrink_fraction` | 0.25 | share of L1 and L2 entries a cleanup under pressure drops |
/// | `slow_query_threshold` | 1s | queries slower than this are logged as slow |
/// | `query_stats_max` | 5000 | query shapes with statistics; the least called are evicted beyond |
/// | `alert_memory_usage` | 0.8 | memory alert: usage as a fraction of the limit |
/// | `alert_cache_hit_rate` | 0.7 | cache alert: hit rate below this... |
/// | `alert_cache_min_lookups` | 1000 | ...once the cache has seen this many lookups |
/// | `alert_slow_queries` | 10 | slow-query alert: more than this many within `alert_window` |
/// | `alert_window` | 5m | the window of the slow-query alert |
/// | `alert_task_failure_rate` | 0.1 | task alert: failed, panicked and timed-out share of finished tasks |
/// | `alert_resource_usage` | 0.9 | CPU, system memory and disk alerts: use as a fraction |
/// | `admin_tokens` | none | admin API bearer tokens by name (`{ ops = "..." }`); mutations need one |
/// | `admin_require_token_for_reads` | false | the admin API's read routes need a token too |
/// | `admin_body_limit_bytes` | 65536 | largest admin API request body |
/// | `admin_rate_limit_per_minute` | 600 | admin API requests a client may make a minute (burst included) |
/// | `profiling_enabled` | false | `#[performance_monitor]` calls run inside a `tracing` span named after the operation, for span-based profilers |
/// | `allocation_tracking_enabled` | true | with `TrackingAllocator` as the global allocator, count allocations; false at `install()` stops counting for good |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceConfig {
    pub cache_enabled: bool,
    #[serde(with = "duration_serde")]
    pub cache_ttl: Duration,
    pub cache_max_size: u64,
    pub l2_max_bytes: u64,
    pub compression_threshold_bytes: u64,
    pub zstd_level: i32,
    pub zstd_compress_literals: bool,
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
    #[serde(with = "duration_serde")]
    pub cache_sweep_interval: Duration,
    #[serde(with = "duration_serde")]
    pub cache_fail_safe_max: Duration,
    #[serde(with = "duration_serde")]
    pub cache_fail_safe_throttle: Duration,
    #[serde(with = "duration_serde")]
    pub cache_soft_timeout: Duration,
    #[serde(with = "duration_serde")]
    pub cache_hard_timeout: Duration,
    pub cache_eager_refresh: f64,
    pub cache_ttl_jitter: f64,
    #[serde(with = "duration_serde")]
    pub cache_failure_ttl: Duration,
    pub max_workers: u64,
    pub max_queued: u64,
    pub max_blocking_workers: u64,
    #[serde(with = "duration_serde")]
    pub task_timeout: Duration,
    pub memory_cleanup_threshold: f64,
    pub memory_limit_bytes: Option<u64>,
    #[serde(with = "duration_serde")]
    pub memory_check_interval: Duration,
    #[serde(with = "duration_serde")]
    pub memory_cleanup_min_interval: Duration,
    pub memory_pressure_shrink_fraction: f64,
    #[serde(with = "duration_serde")]
    pub slow_query_threshold: Duration,
    pub query_stats_max: u64,
    pub alert_memory_usage: f64,
    pub alert_cache_hit_rate: f64,
    pub alert_cache_min_lookups: u64,
    pub alert_slow_queries: u64,
    #[serde(with = "duration_serde")]
    pub alert_window: Duration,
    pub alert_task_failure_rate: f64,
    pub alert_resource_usage: f64,
    pub admin_tokens: std::collections::BTreeMap<String, Secret>,
    pub admin_require_token_for_reads: bool,
    pub admin_body_limit_bytes: u64,
    pub admin_rate_limit_per_minute: u64,
    pub profiling_enabled: bool,
    pub allocation_tracking_enabled: bool,
}

/// The fields a running optimizer can change ([`PerformanceOptimizer::update_config`](crate::PerformanceOptimizer::update_config)).
pub const HOT_FIELDS: &[&str] = &[
    "cache_enabled",
    "max_workers",
    "task_timeout",
    "profiling_enabled",
];

/// The field names, which are also the `PERF_*` variable names in lower case.
const FIELDS: &[&str] = &[
    "cache_enabled",
    "cache_ttl",
    "cache_max_size",
    "l2_max_bytes",
    "compression_threshold_bytes",
    "zstd_level",
    "zstd_compress_literals",
    "max_key_bytes",
    "max_value_bytes",
    "cache_sweep_interval",
    "cache_fail_safe_max",
    "cache_fail_safe_throttle",
    "cache_soft_timeout",
    "cache_hard_timeout",
    "cache_eager_refresh",
    "cache_ttl_jitter",
    "cache_failure_ttl",
    "max_workers",
    "max_queued",
    "max_blocking_workers",
    "task_timeout",
    "memory_cleanup_threshold",
    "memory_limit_bytes",
    "memory_check_interval",
    "memory_cleanup_min_interval",
    "memory_pressure_shrink_fraction",
    "slow_query_threshold",
    "query_stats_max",
    "alert_memory_usage",
    "alert_cache_hit_rate",
    "alert_cache_min_lookups",
    "alert_slow_queries",
    "alert_window",
    "alert_task_failure_rate",
    "alert_resource_usage",
    "admin_tokens",
    "admin_require_token_for_reads",
    "admin_body_limit_bytes",
    "admin_rate_limit_per_minute",
    "profiling_enabled",
    "allocation_tracking_enabled",
];

/// A secret (an admin token): written out where the configuration is stored, never in logs
/// or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Bytes an L2 entry costs beyond its key and encoded value: the entry struct and its slot in
/// the cache's table. Used by L2's weigher and by validation.
pub(crate) const L2_ENTRY_OVERHEAD: u64 = 64;

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            cache_enabled: true,
            cache_ttl: Duration::from_secs(3600),
            cache_max_size: 10_000,
            l2_max_bytes: 128 * 1024 * 1024,
            compression_threshold_bytes: 512,
            zstd_level: 3,
            zstd_compress_literals: false,
            max_key_bytes: 1024,
            max_value_bytes: 4 * 1024 * 1024,
            cache_sweep_interval: Duration::from_secs(30),
            cache_fail_safe_max: Duration::ZERO,
            cache_fail_safe_throttle: Duration::from_secs(30),
            cache_soft_timeout: Duration::ZERO,
            cache_hard_timeout: Duration::ZERO,
            cache_eager_refresh: 0.0,
            cache_ttl_jitter: 0.0,
            cache_failure_ttl: Duration::ZERO,
            max_workers: 10,
            max_queued: 10_000,
            max_blocking_workers: 4,
            task_timeout: Duration::from_secs(30),
            memory_cleanup_threshold: 0.8,
            memory_limit_bytes: None,
            memory_check_interval: Duration::from_secs(30),
            memory_cleanup_min_interval: Duration::from_secs(60),
            memory_pressure_shrink_fraction: 0.25,
            slow_query_threshold: Duration::from_secs(1),
            query_stats_max: 5000,
            alert_memory_usage: 0.8,
            alert_cache_hit_rate: 0.7,
            alert_cache_min_lookups: 1000,
            alert_slow_queries: 10,
            alert_window: Duration::from_secs(300),
            alert_task_failure_rate: 0.1,
            alert_resource_usage: 0.9,
            admin_tokens: std::collections::BTreeMap::new(),
            admin_require_token_for_reads: false,
            admin_body_limit_bytes: 64 * 1024,
            admin_rate_limit_per_minute: 600,
            profiling_enabled: false,
            allocation_tracking_enabled: true,
        }
    }
}

impl PerformanceConfig {
    /// Defaults overridden by `PERF_*` environment variables (`PERF_CACHE_TTL=30m`), validated.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(None)
    }

    /// Defaults overridden by a TOML file, validated. Environment variables are not read.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::extract(Self::defaults().merge(Toml::file_exact(path.as_ref())))
    }

    /// Defaults, then the TOML file if given, then `PERF_*` environment variables; validated.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Self::defaults();
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only our own fields: other PERF_* variables (PERF_REQUIRE_REDIS, say) are not ours.
        let env = Env::prefixed("PERF_").only(FIELDS);
        Self::extract(figment.merge(env))
    }

    /// Parses a TOML document over the defaults, validated.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::extract(Self::defaults().merge(Toml::string(toml)))
    }

    fn defaults() -> Figment {
        Figment::from(Serialized::defaults(Self::default()))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field and reports every bad one with its reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        let mut check = |ok: bool, field: &'static str, reason: String| {
            if !ok {
                bad.push(FieldError { field, reason });
            }
        };
        let positive = |d: Duration| d > Duration::ZERO;
        check(
            positive(self.cache_ttl),
            "cache_ttl",
            "must be greater than zero".into(),
        );
        check(
            self.cache_max_size > 0,
            "cache_max_size",
            "must be at least 1".into(),
        );
        let levels = zstd::compression_level_range();
        check(
            levels.contains(&self.zstd_level),
            "zstd_level",
            format!("must be within {}..={}", levels.start(), levels.end()),
        );
        check(
            self.max_key_bytes > 0,
            "max_key_bytes",
            "must be at least 1".into(),
        );
        check(
            self.max_key_bytes <= u64::from(u16::MAX),
            "max_key_bytes",
            format!("must be at most {}", u16::MAX),
        );
        check(
            self.max_value_bytes > 0,
            "max_value_bytes",
            "must be at least 1".into(),
        );
        check(
            self.max_value_bytes <= u64::from(u32::MAX),
            "max_value_bytes",
            format!("must be at most {} (4 GiB)", u32::MAX),
        );
        let largest_entry = self.largest_l2_entry();
        check(
            self.l2_max_bytes >= largest_entry,
            "l2_max_bytes",
            format!(
                "must hold at least one entry of max_key_bytes + max_value_bytes + overhead \
                 = {largest_entry} bytes"
            ),
        );
        check(
            positive(self.cache_sweep_interval),
            "cache_sweep_interval",
            "must be greater than zero".into(),
        );
        check(
            positive(self.cache_fail_safe_throttle),
            "cache_fail_safe_throttle",
            "must be greater than zero".into(),
        );
        for (field, value) in [
            ("cache_eager_refresh", self.cache_eager_refresh),
            ("cache_ttl_jitter", self.cache_ttl_jitter),
        ] {
            check(
                (0.0..1.0).contains(&value),
                field,
                "must be a fraction in [0, 1) (0: off)".into(),
            );
        }
        check(
            self.cache_hard_timeout.is_zero() || self.cache_soft_timeout <= self.cache_hard_timeout,
            "cache_soft_timeout",
            format!(
                "must not be above cache_hard_timeout ({:?})",
                self.cache_hard_timeout
            ),
        );
        check(
            self.max_workers > 0,
            "max_workers",
            "must be at least 1".into(),
        );
        check(
            self.max_queued > 0,
            "max_queued",
            "must be at least 1".into(),
        );
        check(
            self.max_blocking_workers > 0,
            "max_blocking_workers",
            "must be at least 1".into(),
        );
        // tokio's semaphores hold at most usize::MAX >> 3 permits.
        for (field, value) in [
            ("max_workers", self.max_workers),
            ("max_queued", self.max_queued),
            ("max_blocking_workers", self.max_blocking_workers),
        ] {
            check(value <= 1 << 32, field, "must be at most 4294967296".into());
        }
        check(
            positive(self.task_timeout),
            "task_timeout",
            "must be greater than zero".into(),
        );
        check(
            self.memory_cleanup_threshold > 0.0 && self.memory_cleanup_threshold <= 1.0,
            "memory_cleanup_threshold",
            "must be a fraction in (0, 1]".into(),
        );
        check(
            self.memory_limit_bytes != Some(0),
            "memory_limit_bytes",
            "must be greater than zero when set".into(),
        );
        check(
            positive(self.memory_check_interval),
            "memory_check_interval",
            "must be greater than zero".into(),
        );
        for (field, value) in [
            ("alert_memory_usage", self.alert_memory_usage),
            ("alert_cache_hit_rate", self.alert_cache_hit_rate),
            ("alert_task_failure_rate", self.alert_task_failure_rate),
            ("alert_resource_usage", self.alert_resource_usage),
        ] {
            check(
                value > 0.0 && value <= 1.0,
                field,
                "must be a fraction in (0, 1]".into(),
            );
        }
        check(
            self.admin_rate_limit_per_minute > 0
                && self.admin_rate_limit_per_minute <= u64::from(u32::MAX),
            "admin_rate_limit_per_minute",
            "must be between 1 and 4294967295".into(),
        );
        check(
            self.admin_body_limit_bytes >= 1024,
            "admin_body_limit_bytes",
            "must be at least 1024".into(),
        );
        check(
            self.admin_tokens
                .values()
                .all(|token| token.expose().len() >= 16),
            "admin_tokens",
            "every token must be at least 16 characters".into(),
        );
        check(
            positive(self.alert_window),
            "alert_window",
            "must be greater than zero".into(),
        );
        check(
            self.query_stats_max > 0,
            "query_stats_max",
            "must be at least 1".into(),
        );
        check(
            self.memory_pressure_shrink_fraction >= 0.0
                && self.memory_pressure_shrink_fraction < 1.0,
            "memory_pressure_shrink_fraction",
            "must be a fraction in [0, 1)".into(),
        );
        if bad.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(bad))
        }
    }

    /// The fields in which `other` differs from this configuration.
    pub fn changed_fields(&self, other: &PerformanceConfig) -> Vec<&'static str> {
        let (Ok(ours), Ok(theirs)) = (
            figment::value::Value::serialize(self),
            figment::value::Value::serialize(other),
        ) else {
            return FIELDS.to_vec();
        };
        let (Some(ours), Some(theirs)) = (ours.into_dict(), theirs.into_dict()) else {
            return FIELDS.to_vec();
        };
        FIELDS
            .iter()
            .copied()
            .filter(|field| ours.get(*field) != theirs.get(*field))
            .collect()
    }

    /// The weight of the largest entry L2 must accept.
    pub(crate) fn largest_l2_entry(&self) -> u64 {
        self.max_key_bytes
            .saturating_add(self.max_value_bytes)
            .saturating_add(crate::cache::codec::HEADER_LEN as u64)
            .saturating_add(L2_ENTRY_OVERHEAD)
    }
}

/// One bad configuration field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A configuration that could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or environment could not be read or parsed; the message names the field.
    #[error("could not load configuration: {0}")]
    Load(#[source] Box<figment::Error>),
    /// One or more fields are out of range.
    #[error("invalid configuration: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Durations as whole seconds or humantime strings on input, humantime strings on output.
pub(crate) mod duration_serde {
    use std::{fmt, time::Duration};

    use serde::{Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("whole seconds or a duration string such as \"30s\", \"5m\", \"1h\"")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(E::custom)
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its large error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        PerformanceConfig::default()
            .validate()
            .expect("defaults validate");
    }

    #[test]
    fn every_bad_field_is_reported_with_its_reason() {
        let config = PerformanceConfig {
            cache_ttl: Duration::ZERO,
            cache_max_size: 0,
            zstd_level: 99,
            max_workers: 0,
            memory_cleanup_threshold: 1.5,
            memory_limit_bytes: Some(0),
            memory_pressure_shrink_fraction: 1.0,
            ..PerformanceConfig::default()
        };
        let Err(ConfigError::Invalid(errors)) = config.validate() else {
            panic!("expected an invalid configuration");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "cache_ttl",
                "cache_max_size",
                "zstd_level",
                "max_workers",
                "memory_cleanup_threshold",
                "memory_limit_bytes",
                "memory_pressure_shrink_fraction"
            ]
        );
        let message = ConfigError::Invalid(errors).to_string();
        assert!(message.contains("zstd_level: must be within"), "{message}");
    }

    #[test]
    fn failure_settings_are_checked_together() {
        let config = PerformanceConfig {
            cache_soft_timeout: Duration::from_secs(3),
            cache_hard_timeout: Duration::from_secs(1),
            cache_eager_refresh: 1.0,
            cache_ttl_jitter: -0.1,
            cache_fail_safe_throttle: Duration::ZERO,
            ..PerformanceConfig::default()
        };
        let Err(ConfigError::Invalid(errors)) = config.validate() else {
            panic!("expected an invalid configuration");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "cache_fail_safe_throttle",
                "cache_eager_refresh",
                "cache_ttl_jitter",
                "cache_soft_timeout"
            ]
        );
        let seeded = PerformanceConfig::from_toml_str(
            "cache_fail_safe_max = \"1h\"\ncache_soft_timeout = \"100ms\"\ncache_hard_timeout = 2",
        )
        .expect("valid");
        assert_eq!(seeded.cache_fail_safe_max, Duration::from_secs(3600));
        assert_eq!(seeded.cache_soft_timeout, Duration::from_millis(100));
        assert_eq!(seeded.cache_hard_timeout, Duration::from_secs(2));
    }

    #[test]
    fn l2_must_hold_the_largest_value() {
        let config = PerformanceConfig {
            l2_max_bytes: 1024,
            max_value_bytes: 4096,
            ..PerformanceConfig::default()
        };
        let Err(ConfigError::Invalid(errors)) = config.validate() else {
            panic!("expected an invalid configuration");
        };
        assert_eq!(errors[0].field, "l2_max_bytes");
    }

    #[test]
    fn toml_accepts_seconds_and_duration_strings() {
        let config = PerformanceConfig::from_toml_str(
            "cache_ttl = 7200\ntask_timeout = \"90s\"\nmax_workers = 15\nmemory_limit_bytes = 1073741824",
        )
        .expect("valid TOML");
        assert_eq!(config.cache_ttl, Duration::from_secs(7200));
        assert_eq!(config.task_timeout, Duration::from_secs(90));
        assert_eq!(config.max_workers, 15);
        assert_eq!(config.memory_limit_bytes, Some(1 << 30));
        assert_eq!(
            config.cache_max_size, 10_000,
            "unset fields keep their defaults"
        );
    }

    #[test]
    fn toml_errors_name_the_field() {
        let err = PerformanceConfig::from_toml_str("cache_ttl = \"soon\"").expect_err("invalid");
        assert!(err.to_string().contains("cache_ttl"), "{err}");
        let err = PerformanceConfig::from_toml_str("cach_ttl = 5").expect_err("invalid");
        assert!(err.to_string().contains("cach_ttl"), "{err}");
        let err = PerformanceConfig::from_toml_str("max_workers = 0").expect_err("invalid");
        assert!(
            err.to_string().contains("max_workers: must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("perf.toml", "cache_ttl = \"10m\"\nmax_workers = 4")?;
            jail.set_env("PERF_MAX_WORKERS", "8");
            jail.set_env("PERF_PROFILING_ENABLED", "true");
            jail.set_env("PERF_MEMORY_CLEANUP_THRESHOLD", "0.75");
            jail.set_env("PERF_SLOW_QUERY_THRESHOLD", "250ms");
            jail.set_env("PERF_REQUIRE_REDIS", "1");
            let config =
                PerformanceConfig::load(Some(Path::new("perf.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.cache_ttl, Duration::from_secs(600));
            assert_eq!(config.max_workers, 8);
            assert!(config.profiling_enabled);
            assert_eq!(config.memory_cleanup_threshold, 0.75);
            assert_eq!(config.slow_query_threshold, Duration::from_millis(250));
            Ok(())
        });
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERF_CACHE_MAX_SIZE", "lots");
            let err = PerformanceConfig::from_env().expect_err("not a number");
            assert!(err.to_string().contains("CACHE_MAX_SIZE"), "{err}");
            assert!(err.to_string().contains("PERF_"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn field_list_matches_the_struct() {
        let config = PerformanceConfig {
            memory_limit_bytes: Some(1),
            ..PerformanceConfig::default()
        };
        let value = figment::value::Value::serialize(&config).expect("serializable");
        let dict = value.into_dict().expect("a table");
        let mut keys: Vec<_> = dict.keys().map(String::as_str).collect();
        let mut fields = FIELDS.to_vec();
        keys.sort_unstable();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn round_trips_through_toml() {
        let config = PerformanceConfig::default();
        let text = toml::to_string(&config).expect("serializable");
        assert_eq!(
            PerformanceConfig::from_toml_str(&text).expect("parses"),
            config
        );
    }
}
