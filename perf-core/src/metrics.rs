//! The metric catalogue: every metric perf emits, with its labels, unit and buckets.
//!
//! Names are those the seed system charted in Grafana, so dashboards keep working. Metrics go
//! through the [`metrics`] facade; the application picks the exporter. Histograms list explicit
//! buckets here so that a Prometheus exporter can be configured to emit `_bucket` series
//! (perf-http does this with [`CATALOGUE`]).

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use metrics::Unit;

pub const CACHE_HITS_TOTAL: &str = "cache_hits_total";
pub const CACHE_MISSES_TOTAL: &str = "cache_misses_total";
pub const CACHE_SIZE_BYTES: &str = "cache_size_bytes";
pub const CACHE_LOAD_EVENTS_TOTAL: &str = "cache_load_events_total";
pub const CACHE_FUNCTION_CALLS_TOTAL: &str = "cache_function_calls_total";
pub const MEMORY_USAGE_BYTES: &str = "memory_usage_bytes";
pub const MEMORY_CLEANUPS_TOTAL: &str = "memory_cleanups_total";
pub const PROCESSING_TIME_SECONDS: &str = "processing_time_seconds";
pub const ASYNC_OPERATIONS_TOTAL: &str = "async_operations_total";
pub const DATABASE_QUERY_TIME_SECONDS: &str = "database_query_time_seconds";
pub const RESOURCE_USAGE_PERCENT: &str = "resource_usage_percent";
pub const CACHE_REMOTE_ERRORS_TOTAL: &str = "cache_remote_errors_total";
pub const CACHE_BREAKER_STATE: &str = "cache_breaker_state";
pub const CACHE_BREAKER_OPENINGS_TOTAL: &str = "cache_breaker_openings_total";
pub const CACHE_BACKPLANE_MESSAGES_TOTAL: &str = "cache_backplane_messages_total";

/// Label names.
pub mod labels {
    pub const TIER: &str = "tier";
    pub const OPERATION: &str = "operation";
    pub const STATUS: &str = "status";
    pub const TYPE: &str = "type";
    pub const REASON: &str = "reason";
    pub const QUERY_TYPE: &str = "query_type";
    pub const DIRECTION: &str = "direction";
    pub const EVENT: &str = "event";
    pub const FUNCTION: &str = "function";
    pub const RESULT: &str = "result";
}

/// Buckets for operation latencies, 100 us to 30 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Explicit buckets, for histograms.
    pub buckets: Option<&'static [f64]>,
}

use labels::*;

/// Every metric perf emits.
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef {
        name: CACHE_HITS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[TIER, OPERATION],
        help: "Cache lookups answered by a tier",
        buckets: None,
    },
    MetricDef {
        name: CACHE_MISSES_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[TIER, OPERATION],
        help: "Cache lookups a tier could not answer",
        buckets: None,
    },
    MetricDef {
        name: CACHE_SIZE_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        labels: &[TIER],
        help: "Bytes held by a byte-bounded cache tier (keys, encoded values, entry overhead)",
        buckets: None,
    },
    MetricDef {
        name: CACHE_LOAD_EVENTS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[EVENT],
        help: "Cache loads by event: loader_run, coalesced, loader_error, stale_served, \
               soft_timeout, hard_timeout, refresh, shared_failure",
        buckets: None,
    },
    MetricDef {
        name: CACHE_FUNCTION_CALLS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[FUNCTION, RESULT],
        help: "Calls of #[cache_result] functions: hit (answered without running the body) \
               or miss (the body ran); at most 128 functions, later ones as function=\"other\"",
        buckets: None,
    },
    MetricDef {
        name: MEMORY_USAGE_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        labels: &[TYPE],
        help: "Process memory by type (rss, virtual, limit, ...)",
        buckets: None,
    },
    MetricDef {
        name: MEMORY_CLEANUPS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[REASON],
        help: "Memory cleanups run, by what triggered them",
        buckets: None,
    },
    MetricDef {
        name: PROCESSING_TIME_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &[OPERATION],
        help: "Time spent in a monitored operation",
        buckets: Some(LATENCY_BUCKETS_SECONDS),
    },
    MetricDef {
        name: ASYNC_OPERATIONS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[OPERATION, STATUS],
        help: "Monitored operations by outcome (success, error, panic, cancelled)",
        buckets: None,
    },
    MetricDef {
        name: DATABASE_QUERY_TIME_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &[QUERY_TYPE],
        help: "Database query time by query type",
        buckets: Some(LATENCY_BUCKETS_SECONDS),
    },
    MetricDef {
        name: RESOURCE_USAGE_PERCENT,
        kind: MetricKind::Gauge,
        unit: Unit::Percent,
        labels: &[TYPE],
        help: "System resource usage (cpu, memory, disk) in percent",
        buckets: None,
    },
    MetricDef {
        name: CACHE_REMOTE_ERRORS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[REASON],
        help: "Remote cache tier calls that failed: error, timeout, or unavailable (breaker open)",
        buckets: None,
    },
    MetricDef {
        name: CACHE_BREAKER_STATE,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Remote cache tier circuit breaker: 0 closed, 1 half-open, 2 open",
        buckets: None,
    },
    MetricDef {
        name: CACHE_BREAKER_OPENINGS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Times the remote cache tier circuit breaker opened",
        buckets: None,
    },
    MetricDef {
        name: CACHE_BACKPLANE_MESSAGES_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[DIRECTION],
        help: "Cache invalidation messages between instances, sent and received",
        buckets: None,
    },
];

/// Describes every catalogue metric to the installed recorder (help text and unit), under
/// the names it is emitted with ([`name`]).
pub fn describe_all() {
    for def in CATALOGUE {
        let name = self::name(def.name);
        match def.kind {
            MetricKind::Counter => metrics::describe_counter!(name, def.unit, def.help),
            MetricKind::Gauge => metrics::describe_gauge!(name, def.unit, def.help),
            MetricKind::Histogram => metrics::describe_histogram!(name, def.unit, def.help),
        }
    }
}

// ----- the name prefix -----

/// The catalogue's names with the prefix before them, made once when the prefix is set.
#[derive(Debug)]
struct Prefixed {
    prefix: String,
    names: Vec<(&'static str, &'static str)>,
}

static PREFIX: OnceLock<Prefixed> = OnceLock::new();
/// Set when a name was emitted without a prefix: setting one then would split the series.
static EMITTED_UNPREFIXED: AtomicBool = AtomicBool::new(false);

/// Why [`set_prefix`] refused a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// Prometheus names are `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("metric prefix {0:?} is not a Prometheus name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)")]
    Invalid(String),
    /// Another prefix was set first; metric names are process-wide.
    #[error("the metric prefix is already {current:?}; it is set once per process")]
    AlreadySet {
        /// The prefix in force.
        current: String,
    },
    /// perf emitted a metric before the prefix was set.
    #[error(
        "perf already emitted metrics without a prefix; set metrics_prefix before the \
         first metric (install() sets it from the configuration)"
    )]
    AlreadyEmitted,
}

/// Checks `prefix` as the start of a Prometheus metric name (empty means none).
pub fn check_prefix(prefix: &str) -> Result<(), PrefixError> {
    let mut chars = prefix.chars();
    let valid_start = chars
        .next()
        .is_none_or(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(PrefixError::Invalid(prefix.to_owned()))
    }
}

/// Puts `prefix` before the name of every metric perf emits, from now on, for the whole
/// process (`ads_` gives `ads_cache_hits_total`), so that perf's series can be told from
/// others of the same name. Set it before perf emits anything: `install()` does, from
/// `metrics_prefix` in the configuration. Setting the prefix in force again is a no-op; an
/// empty prefix means none.
pub fn set_prefix(prefix: &str) -> Result<(), PrefixError> {
    check_prefix(prefix)?;
    if let Some(set) = PREFIX.get() {
        return match set.prefix == prefix {
            true => Ok(()),
            false => Err(PrefixError::AlreadySet {
                current: set.prefix.clone(),
            }),
        };
    }
    if prefix.is_empty() {
        return Ok(());
    }
    if EMITTED_UNPREFIXED.load(Ordering::Acquire) {
        return Err(PrefixError::AlreadyEmitted);
    }
    let set = PREFIX.get_or_init(|| Prefixed {
        prefix: prefix.to_owned(),
        // Once per process, and only the catalogue's few names: leaking them lets every
        // emission site keep a `&'static str`.
        names: CATALOGUE
            .iter()
            .map(|def| {
                let prefixed: &'static str =
                    Box::leak(format!("{prefix}{}", def.name).into_boxed_str());
                (def.name, prefixed)
            })
            .collect(),
    });
    match set.prefix == prefix {
        true => Ok(()),
        false => Err(PrefixError::AlreadySet {
            current: set.prefix.clone(),
        }),
    }
}

/// The prefix in force (empty when none).
pub fn prefix() -> &'static str {
    PREFIX.get().map_or("", |set| set.prefix.as_str())
}

/// The name catalogue metric `metric` is emitted under: with the prefix, if one is set.
pub fn name(metric: &'static str) -> &'static str {
    match PREFIX.get() {
        Some(set) => set
            .names
            .iter()
            .find(|(plain, _)| *plain == metric)
            .map_or(metric, |(_, prefixed)| prefixed),
        None => {
            EMITTED_UNPREFIXED.store(true, Ordering::Release);
            metric
        }
    }
}

/// The catalogue entry for a metric name.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|def| def.name == name)
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::DebuggingRecorder;

    use super::*;

    #[test]
    fn describe_all_describes_every_metric() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            // Descriptions are attached to series, so touch one of each.
            for def in CATALOGUE {
                match def.kind {
                    MetricKind::Counter => metrics::counter!(def.name).increment(1),
                    MetricKind::Gauge => metrics::gauge!(def.name).set(1.0),
                    MetricKind::Histogram => metrics::histogram!(def.name).record(1.0),
                }
            }
        });
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(snapshot.len(), CATALOGUE.len());
        for (key, unit, help, _) in snapshot {
            let def = find(key.key().name()).expect("only catalogue metrics");
            assert_eq!(unit, Some(def.unit), "{}", def.name);
            assert_eq!(help.as_deref(), Some(def.help), "{}", def.name);
        }
    }

    #[test]
    fn histograms_have_sorted_buckets_and_others_none() {
        for def in CATALOGUE {
            match (def.kind, def.buckets) {
                (MetricKind::Histogram, Some(buckets)) => {
                    assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{}", def.name);
                }
                (MetricKind::Histogram, None) => panic!("{} has no buckets", def.name),
                (_, buckets) => assert!(buckets.is_none(), "{}", def.name),
            }
        }
    }
}
