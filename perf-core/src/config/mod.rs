//! [`PerformanceConfig`]: every knob of every component, with defaults and validation.
//!
//! One struct per component ([`CacheConfig`], [`TaskConfig`], [`MemoryConfig`],
//! [`QueryConfig`], [`AlertConfig`], [`MonitorConfig`]), each validating its own fields,
//! composed into [`PerformanceConfig`]. The file and environment stay flat: every field has
//! one key (`cache_ttl`, `max_workers`), the same in TOML and, upper-cased after `PERF_`, in
//! the environment (`PERF_CACHE_TTL`).
//!
//! Load order is defaults, then a TOML file, then `PERF_*` environment variables, each layer
//! overriding the one before. Durations are written either as whole seconds (`3600`) or as a
//! human-readable string (`"1h"`, `"30m"`, `"250ms"`).
//!
//! Loading needs the `config-load` feature (on by default). Without it, build the
//! configuration in code, or deserialize it with any serde format: unknown keys are refused
//! either way.
//!
//! Other crates keep their settings in the same file and environment with a
//! [`ConfigSection`] of their own, loaded alongside with [`PerformanceConfig::load_with`].

mod alerts;
#[cfg(feature = "config-load")]
mod aliases;
mod cache;
pub(crate) mod duration_serde;
mod fields;
mod memory;
mod query;
mod secret;
mod tasks;

#[cfg(feature = "config-load")]
use std::path::Path;
use std::{collections::BTreeMap, fmt};

#[cfg(feature = "config-load")]
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
    value::Dict,
};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned, de::IgnoredAny};

pub use self::{
    alerts::AlertConfig,
    cache::{CacheConfig, EncryptionKey, ValueProtection},
    memory::MemoryConfig,
    query::{MonitorConfig, QueryConfig},
    secret::Secret,
    tasks::TaskConfig,
};

/// The configuration of a [`PerformanceOptimizer`](crate::PerformanceOptimizer): one section
/// per component. Each section's fields are documented with their key and default.
///
/// Settings may be added in any release, so neither this struct nor its sections can be
/// written as a literal outside perf-core: start from [`Default`] (or a loaded
/// configuration) and set the fields to change.
///
/// ```
/// use std::time::Duration;
/// use perf_core::PerformanceConfig;
///
/// let mut config = PerformanceConfig::default();
/// config.cache.ttl = Duration::from_secs(300);
/// config.tasks.max_workers = 32;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerformanceConfig {
    /// The multi-level cache: TTLs, capacities, encoding, failure handling.
    #[serde(flatten)]
    pub cache: CacheConfig,
    /// The task manager: pool sizes, queue length, default timeout.
    #[serde(flatten)]
    pub tasks: TaskConfig,
    /// The memory manager: limit, cleanup threshold and spacing, allocation tracking.
    #[serde(flatten)]
    pub memory: MemoryConfig,
    /// The query optimizer: slow-query threshold, statistics capacity.
    #[serde(flatten)]
    pub query: QueryConfig,
    /// The alert rules' thresholds.
    #[serde(flatten)]
    pub alerts: AlertConfig,
    /// The operation monitor: profiling spans.
    #[serde(flatten)]
    pub monitor: MonitorConfig,
}

/// Other names accepted for a key, as `(alias, key)`: the seed's `tracemalloc_enabled` for
/// `allocation_tracking_enabled`. Read in TOML, the environment (`PERF_TRACEMALLOC_ENABLED`)
/// and serde formats alike; written out under the key.
pub const KEY_ALIASES: &[(&str, &str)] = &[("tracemalloc_enabled", "allocation_tracking_enabled")];

/// The key `name` stands for: itself, or the key of which it is an alias.
pub fn canonical_key(name: &str) -> &str {
    KEY_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, key)| key)
}

/// A group of settings kept in the flat configuration file and environment: a struct with
/// `#[serde(default)]`, without `flatten`, whose keys no other section uses.
pub trait ConfigSection: Serialize + DeserializeOwned + Default {
    /// Appends every bad field with its reason.
    fn check(&self, bad: &mut Vec<FieldError>);

    /// Checks every field and reports every bad one with its reason.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        self.check(&mut bad);
        ConfigError::from_fields(bad)
    }
}

/// Appends `field` with `reason` unless `ok`: the sections' checks read as a list of rules.
pub(crate) fn require(
    bad: &mut Vec<FieldError>,
    ok: bool,
    field: &'static str,
    reason: impl Into<String>,
) {
    if !ok {
        bad.push(FieldError {
            field,
            reason: reason.into(),
        });
    }
}

/// The section of [`PerformanceConfig::load`]: nothing besides the components.
#[derive(Debug, Default, Serialize, Deserialize)]
struct NoSection {}

impl ConfigSection for NoSection {
    fn check(&self, _bad: &mut Vec<FieldError>) {}
}

/// The flat form: every section's keys side by side, and whatever else was given, so that
/// an unknown key is an error rather than ignored.
#[derive(Deserialize)]
struct Flat {
    #[serde(flatten)]
    cache: CacheConfig,
    #[serde(flatten)]
    tasks: TaskConfig,
    #[serde(flatten)]
    memory: MemoryConfig,
    #[serde(flatten)]
    query: QueryConfig,
    #[serde(flatten)]
    alerts: AlertConfig,
    #[serde(flatten)]
    monitor: MonitorConfig,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// Refuses unknown keys, as the flat struct did with `deny_unknown_fields` (which serde does
/// not support together with `flatten`).
impl<'de> Deserialize<'de> for PerformanceConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let flat = Flat::deserialize(deserializer)?;
        if let Some(key) = flat.unknown.keys().next() {
            return Err(serde::de::Error::custom(format_args!(
                "unknown field `{key}`"
            )));
        }
        Ok(Self {
            cache: flat.cache,
            tasks: flat.tasks,
            memory: flat.memory,
            query: flat.query,
            alerts: flat.alerts,
            monitor: flat.monitor,
        })
    }
}

impl PerformanceConfig {
    /// Defaults overridden by `PERF_*` environment variables (`PERF_CACHE_TTL=30m`), validated.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(None)
    }

    /// Defaults overridden by a TOML file, validated. Environment variables are not read.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let figment =
            Self::defaults::<NoSection>().merge(aliases::Aliased(Toml::file_exact(path.as_ref())));
        Ok(Self::extract::<NoSection>(&figment)?.0)
    }

    /// Defaults, then the TOML file if given, then `PERF_*` environment variables; validated.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Ok(Self::load_with::<NoSection>(path)?.0)
    }

    /// Parses a TOML document over the defaults, validated.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_toml_str_with::<NoSection>(toml)?.0)
    }

    /// As [`load`](Self::load), together with another crate's section written in the same
    /// file and environment; both validated, every bad field of either reported.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn load_with<S: ConfigSection>(path: Option<&Path>) -> Result<(Self, S), ConfigError> {
        let mut figment = Self::defaults::<S>();
        if let Some(path) = path {
            figment = figment.merge(aliases::Aliased(Toml::file_exact(path)));
        }
        // Only our own keys: other PERF_* variables (PERF_REQUIRE_REDIS, say) are not ours.
        let mut keys = Self::keys::<S>();
        keys.extend(KEY_ALIASES.iter().map(|(alias, _)| *alias));
        let env = Env::prefixed("PERF_").only(&keys);
        Self::extract(&figment.merge(aliases::Aliased(env)))
    }

    /// As [`from_toml_str`](Self::from_toml_str), together with another crate's section.
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    pub fn from_toml_str_with<S: ConfigSection>(toml: &str) -> Result<(Self, S), ConfigError> {
        Self::extract(&Self::defaults::<S>().merge(aliases::Aliased(Toml::string(toml))))
    }

    /// Every key, section by section: the TOML keys, and the `PERF_*` names in lower case.
    /// Not their aliases (which serde lists with them).
    fn keys<S: ConfigSection>() -> Vec<&'static str> {
        let mut keys = [
            fields::field_names::<CacheConfig>(),
            fields::field_names::<TaskConfig>(),
            fields::field_names::<MemoryConfig>(),
            fields::field_names::<QueryConfig>(),
            fields::field_names::<AlertConfig>(),
            fields::field_names::<MonitorConfig>(),
            fields::field_names::<S>(),
        ]
        .concat();
        keys.retain(|key| !KEY_ALIASES.iter().any(|(alias, _)| alias == key));
        keys
    }

    #[cfg(feature = "config-load")]
    fn defaults<S: ConfigSection>() -> Figment {
        Figment::from(Serialized::defaults(Self::default()))
            .join(Serialized::defaults(S::default()))
    }

    /// Each section is read from the whole figment (ignoring the other sections' keys), so
    /// that a bad value's error names its key and where it came from.
    #[cfg(feature = "config-load")]
    fn extract<S: ConfigSection>(figment: &Figment) -> Result<(Self, S), ConfigError> {
        let keys = Self::keys::<S>();
        let given: Dict = figment.extract().map_err(LoadError::new)?;
        if let Some(key) = given.keys().find(|key| !keys.contains(&key.as_str())) {
            let mut error = figment::Error::from(format!("unknown field `{key}`")).with_path(key);
            error.metadata = figment.find_metadata(key).cloned();
            return Err(LoadError::new(error).into());
        }
        let config = Self {
            cache: figment.extract().map_err(LoadError::new)?,
            tasks: figment.extract().map_err(LoadError::new)?,
            memory: figment.extract().map_err(LoadError::new)?,
            query: figment.extract().map_err(LoadError::new)?,
            alerts: figment.extract().map_err(LoadError::new)?,
            monitor: figment.extract().map_err(LoadError::new)?,
        };
        let section: S = figment.extract().map_err(LoadError::new)?;
        let mut bad = Vec::new();
        config.check(&mut bad);
        section.check(&mut bad);
        ConfigError::from_fields(bad)?;
        Ok((config, section))
    }

    /// Checks every field and reports every bad one with its reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        self.check(&mut bad);
        ConfigError::from_fields(bad)
    }

    fn check(&self, bad: &mut Vec<FieldError>) {
        self.cache.check(bad);
        self.tasks.check(bad);
        self.memory.check(bad);
        self.query.check(bad);
        self.alerts.check(bad);
        self.monitor.check(bad);
    }

    /// The keys of the fields in which `other` differs from this configuration.
    pub fn changed_fields(&self, other: &PerformanceConfig) -> Vec<&'static str> {
        let keys = Self::keys::<NoSection>();
        let (Some(ours), Some(theirs)) = (fields::values(self), fields::values(other)) else {
            return keys;
        };
        keys.into_iter()
            .filter(|key| ours.get(*key) != theirs.get(*key))
            .collect()
    }
}

/// One bad configuration field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's key, as written in TOML.
    pub field: &'static str,
    /// What the value must be, as a phrase that follows the key (`must be at least 1`).
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
    #[cfg(feature = "config-load")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
    #[error("could not load configuration: {0}")]
    Load(#[source] LoadError),
    /// One or more fields are out of range.
    #[error("invalid configuration: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    fn from_fields(bad: Vec<FieldError>) -> Result<(), Self> {
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Self::Invalid(bad))
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the file or environment could not be read or parsed. Its message names the key and
/// where the value came from (the file, or the `PERF_*` variable); its
/// [`source`](std::error::Error::source) is the loader's own error.
#[cfg(feature = "config-load")]
#[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
#[derive(Debug)]
pub struct LoadError(Box<figment::Error>);

#[cfg(feature = "config-load")]
impl LoadError {
    /// Not `From`: figment stays out of the public API.
    fn new(error: figment::Error) -> Self {
        Self(Box::new(error))
    }
}

#[cfg(feature = "config-load")]
impl From<LoadError> for ConfigError {
    fn from(error: LoadError) -> Self {
        Self::Load(error)
    }
}

#[cfg(feature = "config-load")]
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "config-load")]
impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its large error
mod tests {
    #[cfg(feature = "config-load")]
    use std::error::Error as _;
    use std::time::Duration;

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
            cache: CacheConfig {
                ttl: Duration::ZERO,
                max_size: 0,
                zstd_level: 99,
                ..CacheConfig::default()
            },
            tasks: TaskConfig {
                max_workers: 0,
                ..TaskConfig::default()
            },
            memory: MemoryConfig {
                cleanup_threshold: 1.5,
                limit_bytes: Some(0),
                pressure_shrink_fraction: 1.0,
                ..MemoryConfig::default()
            },
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
    fn each_section_validates_its_own_fields() {
        let tasks = TaskConfig {
            max_queued: 0,
            ..TaskConfig::default()
        };
        let Err(ConfigError::Invalid(errors)) = tasks.validate() else {
            panic!("expected an invalid section");
        };
        assert_eq!(errors[0].field, "max_queued");
        AlertConfig::default().validate().expect("valid");
    }

    #[test]
    fn failure_settings_are_checked_together() {
        let config = PerformanceConfig {
            cache: CacheConfig {
                soft_timeout: Duration::from_secs(3),
                hard_timeout: Duration::from_secs(1),
                eager_refresh: 1.0,
                ttl_jitter: -0.1,
                fail_safe_throttle: Duration::ZERO,
                ..CacheConfig::default()
            },
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
        #[cfg(feature = "config-load")]
        {
            let seeded = PerformanceConfig::from_toml_str(
                "cache_fail_safe_max = \"1h\"\ncache_soft_timeout = \"100ms\"\ncache_hard_timeout = 2",
            )
            .expect("valid");
            assert_eq!(seeded.cache.fail_safe_max, Duration::from_secs(3600));
            assert_eq!(seeded.cache.soft_timeout, Duration::from_millis(100));
            assert_eq!(seeded.cache.hard_timeout, Duration::from_secs(2));
        }
    }

    #[cfg(feature = "config-load")]
    #[test]
    fn toml_accepts_seconds_and_duration_strings() {
        let config = PerformanceConfig::from_toml_str(
            "cache_ttl = 7200\ntask_timeout = \"90s\"\nmax_workers = 15\nmemory_limit_bytes = 1073741824",
        )
        .expect("valid TOML");
        assert_eq!(config.cache.ttl, Duration::from_secs(7200));
        assert_eq!(config.tasks.timeout, Duration::from_secs(90));
        assert_eq!(config.tasks.max_workers, 15);
        assert_eq!(config.memory.limit_bytes, Some(1 << 30));
        assert_eq!(
            config.cache.max_size, 10_000,
            "unset fields keep their defaults"
        );
    }

    #[cfg(feature = "config-load")]
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

    #[cfg(feature = "config-load")]
    #[test]
    fn a_load_error_keeps_its_source() {
        let err = PerformanceConfig::from_toml_str("cache_ttl = \"soon\"").expect_err("invalid");
        let ConfigError::Load(load) = &err else {
            panic!("expected a load error, got {err:?}");
        };
        let source = err.source().expect("the load error");
        assert_eq!(source.to_string(), load.to_string());
        let figment = load.source().expect("figment's error");
        assert!(figment.is::<figment::Error>(), "{figment:?}");
        assert!(figment.to_string().contains("cache_ttl"), "{figment}");
    }

    #[cfg(feature = "config-load")]
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
            assert_eq!(config.cache.ttl, Duration::from_secs(600));
            assert_eq!(config.tasks.max_workers, 8);
            assert!(config.monitor.profiling_enabled);
            assert_eq!(config.memory.cleanup_threshold, 0.75);
            assert_eq!(config.query.slow_threshold, Duration::from_millis(250));
            Ok(())
        });
    }

    /// A key ring from a file, and from the environment in figment's inline syntax.
    #[cfg(feature = "config-load")]
    #[test]
    fn encryption_keys_load_from_a_file_and_the_environment() {
        const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "perf.toml",
                &format!(
                    "cache_value_protection = \"authenticate\"\n\
                     cache_encryption_keys = [{{ id = \"2026-12\", key = \"{KEY}\" }}]"
                ),
            )?;
            let config =
                PerformanceConfig::from_toml_file("perf.toml").map_err(|e| e.to_string())?;
            assert_eq!(config.cache.encryption_keys[0].id, "2026-12");
            assert_eq!(config.cache.value_protection, ValueProtection::Authenticate);

            jail.set_env(
                "PERF_CACHE_ENCRYPTION_KEYS",
                format!("[{{id=\"new\",key=\"{KEY}\"}},{{id=\"old\",key=\"{KEY}\"}}]"),
            );
            let config = PerformanceConfig::from_env().map_err(|e| e.to_string())?;
            let ids: Vec<&str> = config
                .cache
                .encryption_keys
                .iter()
                .map(|key| key.id.as_str())
                .collect();
            assert_eq!(ids, ["new", "old"]);
            assert!(
                !format!("{config:?}").contains(KEY),
                "keys stay out of Debug"
            );
            Ok(())
        });
    }

    /// The flat keys reach the nested sections, from a file and from the environment alike.
    #[cfg(feature = "config-load")]
    #[test]
    fn flat_keys_fill_every_section() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "perf.toml",
                "cache_max_size = 500\nl2_max_bytes = 67108864\nmax_queued = 99\n\
                 memory_limit_bytes = 1073741824\nquery_stats_max = 7\nalert_window = \"1m\"",
            )?;
            jail.set_env("PERF_CACHE_ENABLED", "false");
            jail.set_env("PERF_TASK_TIMEOUT", "5s");
            jail.set_env("PERF_MEMORY_CHECK_INTERVAL", "10");
            jail.set_env("PERF_ALERT_CACHE_HIT_RATE", "0.5");
            jail.set_env("PERF_ALLOCATION_TRACKING_ENABLED", "false");
            let config =
                PerformanceConfig::load(Some(Path::new("perf.toml"))).map_err(|e| e.to_string())?;
            let expected = PerformanceConfig {
                cache: CacheConfig {
                    enabled: false,
                    max_size: 500,
                    l2_max_bytes: 64 << 20,
                    ..CacheConfig::default()
                },
                tasks: TaskConfig {
                    max_queued: 99,
                    timeout: Duration::from_secs(5),
                    ..TaskConfig::default()
                },
                memory: MemoryConfig {
                    limit_bytes: Some(1 << 30),
                    check_interval: Duration::from_secs(10),
                    allocation_tracking_enabled: false,
                    ..MemoryConfig::default()
                },
                query: QueryConfig {
                    stats_max: 7,
                    ..QueryConfig::default()
                },
                alerts: AlertConfig {
                    window: Duration::from_secs(60),
                    cache_hit_rate: 0.5,
                    ..AlertConfig::default()
                },
                monitor: MonitorConfig::default(),
            };
            assert_eq!(config, expected);
            Ok(())
        });
    }

    /// The seed's name for allocation tracking, in a file, the environment and JSON.
    #[cfg(feature = "config-load")]
    #[test]
    fn tracemalloc_enabled_is_read_as_allocation_tracking() {
        let config =
            PerformanceConfig::from_toml_str("tracemalloc_enabled = false").expect("an alias");
        assert!(!config.memory.allocation_tracking_enabled);
        let err = PerformanceConfig::from_toml_str(
            "tracemalloc_enabled = false\nallocation_tracking_enabled = true",
        )
        .expect_err("one setting given twice");
        assert!(err.to_string().contains("tracemalloc_enabled"), "{err}");
        figment::Jail::expect_with(|jail| {
            jail.create_file("perf.toml", "allocation_tracking_enabled = true")?;
            jail.set_env("PERF_TRACEMALLOC_ENABLED", "false");
            let config =
                PerformanceConfig::load(Some(Path::new("perf.toml"))).map_err(|e| e.to_string())?;
            assert!(
                !config.memory.allocation_tracking_enabled,
                "the environment overrides the file, whichever name each uses"
            );
            Ok(())
        });
    }

    #[test]
    fn json_reads_the_seeds_names() {
        let mut value = serde_json::to_value(PerformanceConfig::default()).expect("serializable");
        let fields = value.as_object_mut().expect("an object");
        fields.remove("allocation_tracking_enabled");
        fields.insert("tracemalloc_enabled".into(), false.into());
        let config: PerformanceConfig = serde_json::from_value(value).expect("an alias");
        assert!(!config.memory.allocation_tracking_enabled);
        assert_eq!(
            canonical_key("tracemalloc_enabled"),
            "allocation_tracking_enabled"
        );
        assert_eq!(canonical_key("cache_ttl"), "cache_ttl");
    }

    #[cfg(feature = "config-load")]
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

    /// Another crate's section.
    #[cfg(feature = "config-load")]
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Extra {
        extra_limit: u64,
    }

    #[cfg(feature = "config-load")]
    impl ConfigSection for Extra {
        fn check(&self, bad: &mut Vec<FieldError>) {
            require(
                bad,
                self.extra_limit < 100,
                "extra_limit",
                "must be below 100",
            );
        }
    }

    #[cfg(feature = "config-load")]
    #[test]
    fn a_section_of_another_crate_loads_alongside() {
        let (config, extra) =
            PerformanceConfig::from_toml_str_with::<Extra>("max_workers = 3\nextra_limit = 9")
                .expect("valid");
        assert_eq!(config.tasks.max_workers, 3);
        assert_eq!(extra.extra_limit, 9);
        let err = PerformanceConfig::from_toml_str("extra_limit = 9").expect_err("not ours");
        assert!(err.to_string().contains("extra_limit"), "{err}");
        let Err(ConfigError::Invalid(errors)) =
            PerformanceConfig::from_toml_str_with::<Extra>("max_workers = 0\nextra_limit = 100")
        else {
            panic!("expected both sections' errors");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["max_workers", "extra_limit"]);
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERF_EXTRA_LIMIT", "12");
            let (_, extra) =
                PerformanceConfig::load_with::<Extra>(None).map_err(|e| e.to_string())?;
            assert_eq!(extra.extra_limit, 12);
            Ok(())
        });
    }

    #[test]
    fn keys_are_unique_and_match_the_serialized_form() {
        let config = PerformanceConfig {
            memory: MemoryConfig {
                limit_bytes: Some(1),
                ..MemoryConfig::default()
            },
            ..PerformanceConfig::default()
        };
        let values = fields::values(&config).expect("a map");
        let mut serialized: Vec<_> = values.keys().map(String::as_str).collect();
        let mut keys = PerformanceConfig::keys::<NoSection>();
        serialized.sort_unstable();
        keys.sort_unstable();
        assert_eq!(serialized, keys);
        let count = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), count, "no key in two sections");
    }

    #[test]
    fn json_refuses_unknown_keys() {
        let mut value = serde_json::to_value(PerformanceConfig::default()).expect("serializable");
        value["cach_ttl"] = 5.into();
        let err = serde_json::from_value::<PerformanceConfig>(value).expect_err("unknown key");
        assert!(err.to_string().contains("cach_ttl"), "{err}");
    }

    #[cfg(feature = "config-load")]
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
