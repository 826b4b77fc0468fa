//! What a running optimizer can change: one row per key, saying how to take the field from a
//! new configuration and how to give it to its component.

use super::PerformanceOptimizer;
use crate::config::PerformanceConfig;

/// A field that a running optimizer can change: its key, how to take it from a new
/// configuration, and how to give it to its component.
pub(super) struct HotField {
    pub(super) field: &'static str,
    pub(super) copy: fn(&mut PerformanceConfig, &PerformanceConfig),
    pub(super) apply: fn(&PerformanceOptimizer, &PerformanceConfig) -> Result<(), String>,
}

/// A row of [`HOT`]: the key, the field's path in [`PerformanceConfig`], how to apply it.
macro_rules! hot {
    ($key:literal, $($path:ident).+, $apply:expr) => {
        HotField {
            field: $key,
            copy: |to, from| to.$($path).+ = from.$($path).+,
            apply: $apply,
        }
    };
}

/// The one declaration of what can change at run time: [`HOT_FIELDS`] lists its keys and
/// [`PerformanceOptimizer::update_config`] applies the rows whose field changed. None can
/// fail once the configuration validated; were one to, it would have to come first, so that
/// a refusal changes nothing.
pub(super) const HOT: [HotField; 23] = [
    hot!("max_workers", tasks.max_workers, |optimizer, config| {
        (optimizer.tasks)
            .set_max_workers(config.tasks.max_workers)
            .map_err(|error| error.to_string())
    }),
    hot!("cache_enabled", cache.enabled, |optimizer, config| {
        optimizer.cache.set_enabled(config.cache.enabled);
        Ok(())
    }),
    hot!("cache_ttl", cache.ttl, cache_defaults),
    hot!("cache_fail_safe_max", cache.fail_safe_max, cache_defaults),
    hot!(
        "cache_fail_safe_throttle",
        cache.fail_safe_throttle,
        cache_defaults
    ),
    hot!("cache_soft_timeout", cache.soft_timeout, cache_defaults),
    hot!("cache_hard_timeout", cache.hard_timeout, cache_defaults),
    hot!("cache_eager_refresh", cache.eager_refresh, cache_defaults),
    hot!("cache_ttl_jitter", cache.ttl_jitter, cache_defaults),
    hot!("cache_failure_ttl", cache.failure_ttl, cache_defaults),
    hot!("task_timeout", tasks.timeout, |optimizer, config| {
        optimizer.tasks.set_default_timeout(config.tasks.timeout);
        Ok(())
    }),
    hot!(
        "memory_cleanup_threshold",
        memory.cleanup_threshold,
        memory_thresholds
    ),
    hot!(
        "memory_cleanup_min_interval",
        memory.cleanup_min_interval,
        memory_thresholds
    ),
    hot!(
        "memory_pressure_shrink_fraction",
        memory.pressure_shrink_fraction,
        memory_thresholds
    ),
    hot!(
        "slow_query_threshold",
        query.slow_threshold,
        |optimizer, config| {
            (optimizer.query).set_slow_threshold(config.query.slow_threshold);
            Ok(())
        }
    ),
    hot!("alert_memory_usage", alerts.memory_usage, read_fresh),
    hot!("alert_cache_hit_rate", alerts.cache_hit_rate, read_fresh),
    hot!(
        "alert_cache_min_lookups",
        alerts.cache_min_lookups,
        read_fresh
    ),
    hot!("alert_slow_queries", alerts.slow_queries, read_fresh),
    hot!("alert_window", alerts.window, read_fresh),
    hot!(
        "alert_task_failure_rate",
        alerts.task_failure_rate,
        read_fresh
    ),
    hot!("alert_resource_usage", alerts.resource_usage, read_fresh),
    hot!(
        "profiling_enabled",
        monitor.profiling_enabled,
        |optimizer, config| {
            (optimizer.monitor.profiling()).set(config.monitor.profiling_enabled);
            Ok(())
        }
    ),
];

/// The cache's TTL, fail-safe, timeout, refresh-ahead and jitter defaults, all at once.
fn cache_defaults(
    optimizer: &PerformanceOptimizer,
    config: &PerformanceConfig,
) -> Result<(), String> {
    (optimizer.cache)
        .set_defaults(&config.cache)
        .map_err(|error| error.to_string())
}

fn memory_thresholds(
    optimizer: &PerformanceOptimizer,
    config: &PerformanceConfig,
) -> Result<(), String> {
    optimizer.memory.set_thresholds(&config.memory);
    Ok(())
}

/// A field its readers take from [`PerformanceOptimizer::config`] each time (the alert
/// rules): the new configuration in force is all it takes.
fn read_fresh(_: &PerformanceOptimizer, _: &PerformanceConfig) -> Result<(), String> {
    Ok(())
}

/// The keys of the fields a running optimizer can change
/// ([`PerformanceOptimizer::update_config`]).
pub const HOT_FIELDS: &[&str] = &{
    let mut keys = [""; HOT.len()];
    let mut i = 0;
    while i < HOT.len() {
        keys[i] = HOT[i].field;
        i += 1;
    }
    keys
};
