//! The metric catalogue: every metric perf emits, with its labels, unit and buckets.
//!
//! Names are those the seed system charted in Grafana, so dashboards keep working. Metrics go
//! through the [`metrics`] facade; the application picks the exporter. Histograms list explicit
//! buckets here so that a Prometheus exporter can be configured to emit `_bucket` series
//! (perf-http does this with [`CATALOGUE`]).
//!
//! Monitored calls reach the recorder in batches, per thread: call [`flush`] before rendering
//! an exporter's output for it to be exact (perf-http's `/metrics` does).

use std::sync::{
    Arc, OnceLock, Weak,
    atomic::{AtomicBool, Ordering},
};

use parking_lot::Mutex;

use metrics::Unit;

/// Counter `{tier, operation}`: lookups a tier answered. `operation` is the read that asked:
/// `get`, `get_or_load` or `get_many`. Published as deltas every second by the background
/// loops, or by [`PerformanceOptimizer::publish_metrics`](crate::PerformanceOptimizer::publish_metrics).
pub const CACHE_HITS_TOTAL: &str = "cache_hits_total";
/// Counter `{tier, operation}`: lookups that reached a tier and found nothing usable (absent,
/// expired, undecodable or of another type). Labels and publishing as [`CACHE_HITS_TOTAL`].
pub const CACHE_MISSES_TOTAL: &str = "cache_misses_total";
/// Gauge `{tier}`: bytes a tier holds. `l2`: exact, keys, encoded values and a per-entry
/// overhead (its byte bound weighs the same). `l1`: an estimate, entries times
/// [`L1_ENTRY_BYTES_ESTIMATE`](crate::cache::L1_ENTRY_BYTES_ESTIMATE) (L1 holds typed values
/// whose size it cannot see, and counts entries, not bytes). `redis`: the server's
/// `used_memory` (`INFO memory`; summed over a cluster's primaries), everything that server
/// holds and not only this cache's keys, sampled every 5 s in a task of its own (never on a
/// read or write); absent until Redis first answers, then the last answer while it does not.
pub const CACHE_SIZE_BYTES: &str = "cache_size_bytes";
/// Counter `{tier, operation}`: changes to a tier's entries, `operation` `insert` (a write,
/// a load, or a copy from a lower tier), `eviction` (pushed out to make room, memory cleanups
/// included), `expiration` (found or swept past its TTL) or `removal` (deleted, invalidated
/// by prefix or by another instance, or cleared). Published with [`CACHE_HITS_TOTAL`].
pub const CACHE_OPERATIONS_TOTAL: &str = "cache_operations_total";
/// Counter `{event}`: what the get_or_load family's loads did. `event` is `loader_run`,
/// `coalesced`, `loader_error`, `stale_served`, `soft_timeout`, `hard_timeout`, `refresh` or
/// `shared_failure`, the counts of [`LoadStats`](crate::cache::LoadStats).
pub const CACHE_LOAD_EVENTS_TOTAL: &str = "cache_load_events_total";
/// Counter `{function, result}`: calls of `#[cache_result]` functions, `result` `hit` (the
/// call returned without running the body: any tier, or another caller's load) or `miss`
/// (the body ran for it). `function` is the function's path, for the first
/// [`MAX_FUNCTIONS`](crate::cache::MAX_FUNCTIONS) functions called, `other` after.
pub const CACHE_FUNCTION_CALLS_TOTAL: &str = "cache_function_calls_total";
/// Gauge `{type}`: the process's memory from the memory monitor's samples, in bytes. `type`
/// is `rss`, `virtual`, `limit`, `system_total`, `system_available`, and with jemalloc
/// `allocator_allocated` and `allocator_held_free`, with allocation tracking `tracked_live`
/// and `tracked_peak`.
pub const MEMORY_USAGE_BYTES: &str = "memory_usage_bytes";
/// Counter `{reason}`: memory cleanups run, `reason` `threshold` (usage reached
/// `memory_cleanup_threshold`) or `forced` (asked for with `force`, by the admin API or a
/// caller). Rust has no garbage collector: this takes the place of the seed's
/// `gc_collections_total`.
pub const MEMORY_CLEANUPS_TOTAL: &str = "memory_cleanups_total";
/// Gauge `{pool}`: tasks of the [`TaskManager`](crate::tasks::TaskManager) running now,
/// `pool` `async` or `blocking`. Read when the recorder is handed values ([`flush`]).
pub const TASKS_RUNNING: &str = "tasks_running";
/// Gauge, no labels: tasks of the [`TaskManager`](crate::tasks::TaskManager) submitted and
/// waiting for a worker now, async and blocking. Read as [`TASKS_RUNNING`] is.
pub const TASKS_QUEUED: &str = "tasks_queued";
/// Histogram `{operation}`, seconds: the duration of every monitored call
/// (`#[performance_monitor]`, `performance_context`, managed tasks), whatever its outcome.
pub const PROCESSING_TIME_SECONDS: &str = "processing_time_seconds";
/// Counter `{operation, status}`: monitored calls by how they ended, `status` one of
/// [`Status`](crate::monitor::Status)'s labels (`success`, `error`, `panic`, `cancelled`,
/// `timeout`).
pub const ASYNC_OPERATIONS_TOTAL: &str = "async_operations_total";
/// Histogram `{query_type}`, seconds: database queries timed by the
/// [`QueryOptimizer`](crate::query::QueryOptimizer), `query_type` as its caller names it.
pub const DATABASE_QUERY_TIME_SECONDS: &str = "database_query_time_seconds";
/// Counter `{query_type}`: queries the [`QueryOptimizer`](crate::query::QueryOptimizer)
/// found slow (at least `slow_query_threshold`), the ones its slow-query log keeps.
/// `query_type` as in [`DATABASE_QUERY_TIME_SECONDS`]; each type starts at 0 with its first
/// query.
pub const DATABASE_SLOW_QUERIES_TOTAL: &str = "database_slow_queries_total";
/// Gauge `{pool, state}`: a watched connection pool's open connections, `state` `idle` or
/// `in_use` ([`watch_pool`](crate::query::QueryOptimizer::watch_pool); `pool` is the name it
/// was watched under). Read when the recorder is handed values ([`flush`]).
pub const DATABASE_POOL_CONNECTIONS: &str = "database_pool_connections";
/// Gauge `{pool}`: the most connections a watched pool opens. As
/// [`DATABASE_POOL_CONNECTIONS`].
pub const DATABASE_POOL_MAX_CONNECTIONS: &str = "database_pool_max_connections";
/// Counter `{pool}`: acquisitions from a watched pool that found no idle connection and
/// waited for one. As [`DATABASE_POOL_CONNECTIONS`].
pub const DATABASE_POOL_WAITS_TOTAL: &str = "database_pool_waits_total";
/// Counter, no labels: query results served from the query result cache
/// ([`cached_query`](crate::query::QueryOptimizer::cached_query) and
/// [`get_cached_query`](crate::query::QueryOptimizer::get_cached_query)) without running
/// the query. Given to the recorder with the monitored calls ([`flush`]).
pub const QUERY_CACHE_HITS_TOTAL: &str = "query_cache_hits_total";
/// Counter, no labels: lookups in the query result cache that found nothing, so the query
/// ran (or, for `get_cached_query`, the caller got nothing). As [`QUERY_CACHE_HITS_TOTAL`].
pub const QUERY_CACHE_MISSES_TOTAL: &str = "query_cache_misses_total";
/// Gauge `{type}`, percent (0 to 100): the machine's `cpu`, `memory` and fullest `disk`, sampled
/// every 15 s by the background loops.
pub const RESOURCE_USAGE_PERCENT: &str = "resource_usage_percent";
/// Counter `{direction}`, bytes: the machine's network traffic over every interface since
/// boot, `direction` `received` or `transmitted`, sampled with [`RESOURCE_USAGE_PERCENT`];
/// `rate()` gives the I/O rate.
pub const NETWORK_IO_BYTES_TOTAL: &str = "network_io_bytes_total";
/// Counter `{reason}`: remote tier calls that failed, `reason` `error`, `timeout` (past the
/// tier's operation timeout) or `unavailable` (refused at once by an open circuit breaker).
/// Recorded by the remote tier (perf-redis).
pub const CACHE_REMOTE_ERRORS_TOTAL: &str = "cache_remote_errors_total";
/// Gauge, no labels: the remote tier's circuit breaker, 0 closed, 1 half-open (one probe
/// deciding), 2 open (calls refused until the cool-down ends). Recorded by perf-redis.
pub const CACHE_BREAKER_STATE: &str = "cache_breaker_state";
/// Counter, no labels: times the remote tier's circuit breaker opened. Recorded by perf-redis.
pub const CACHE_BREAKER_OPENINGS_TOTAL: &str = "cache_breaker_openings_total";
/// Counter `{direction}`: messages on the Redis backplane, each a batch of invalidations;
/// `direction` `sent` (published) or `received` (from another instance, and applied).
/// Recorded by perf-redis.
pub const CACHE_BACKPLANE_MESSAGES_TOTAL: &str = "cache_backplane_messages_total";
/// Gauge `{alert, severity}`: 1 while an alert fires, 0 once it resolved, from the background
/// evaluation (every 15 s at most). `alert` is an
/// [`AlertKind::as_str`](crate::alerts::AlertKind::as_str), `severity` `warning` or
/// `critical`; an alert whose severity changes resolves at one and fires at the other.
pub const PERFORMANCE_ALERTS_ACTIVE: &str = "performance_alerts_active";

/// Label names, as the metric constants above use them.
pub mod labels {
    /// The cache tier: `l1`, `l2` or `redis` ([`Tier::as_str`](crate::Tier::as_str)).
    pub const TIER: &str = "tier";
    /// A monitored operation's name, or the cache read that asked (`get`, `get_or_load`,
    /// `get_many`).
    pub const OPERATION: &str = "operation";
    /// How a monitored call ended ([`Status::as_str`](crate::monitor::Status::as_str)).
    pub const STATUS: &str = "status";
    /// Which figure of a family: `rss`, `virtual`, ... for memory; `cpu`, `memory`, `disk` for
    /// resources.
    pub const TYPE: &str = "type";
    /// Why: what triggered a memory cleanup, or how a remote call failed.
    pub const REASON: &str = "reason";
    /// The kind of database query, as the code that timed it names it.
    pub const QUERY_TYPE: &str = "query_type";
    /// `sent` or `received` for backplane messages; `received` or `transmitted` for network
    /// traffic.
    pub const DIRECTION: &str = "direction";
    /// The task pool, `async` or `blocking`; or a watched connection pool's name.
    pub const POOL: &str = "pool";
    /// A pooled connection's state, `idle` or `in_use`.
    pub const STATE: &str = "state";
    /// What a cache load did (`loader_run`, `coalesced`, ...).
    pub const EVENT: &str = "event";
    /// A memoized function's path.
    pub const FUNCTION: &str = "function";
    /// A memoized call's outcome, `hit` or `miss`.
    pub const RESULT: &str = "result";
    /// An alert rule's name ([`AlertKind::as_str`](crate::alerts::AlertKind::as_str)).
    pub const ALERT: &str = "alert";
    /// An alert's severity, `warning` or `critical`.
    pub const SEVERITY: &str = "severity";
}

/// Buckets for operation latencies, 100 us to 30 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; exported with a `_total` name.
    Counter,
    /// Set to the latest value.
    Gauge,
    /// A distribution of observations, exported with the buckets of [`MetricDef::buckets`].
    Histogram,
}

/// One entry of the catalogue: what an exporter needs to describe a metric.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MetricDef {
    /// The series name, one of this module's constants.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit passed to `describe_*` (bytes, seconds, percent, count).
    pub unit: Unit,
    /// The label names every series of this metric carries, from [`labels`].
    pub labels: &'static [&'static str],
    /// The description passed to `describe_*` (Prometheus's `# HELP`).
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
        help: "Bytes held by a cache tier: l2 exact, l1 estimated from its entries, redis \
               the server's used_memory",
        buckets: None,
    },
    MetricDef {
        name: CACHE_OPERATIONS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[TIER, OPERATION],
        help: "Changes to a cache tier's entries: insert, eviction, expiration, removal",
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
        help: "Memory cleanups run, by what triggered them (the seed's gc_collections_total)",
        buckets: None,
    },
    MetricDef {
        name: TASKS_RUNNING,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[POOL],
        help: "Tasks of the task manager running now, by pool (async, blocking)",
        buckets: None,
    },
    MetricDef {
        name: TASKS_QUEUED,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Tasks of the task manager waiting for a worker now",
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
        name: DATABASE_SLOW_QUERIES_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[QUERY_TYPE],
        help: "Database queries at or over slow_query_threshold, by query type",
        buckets: None,
    },
    MetricDef {
        name: DATABASE_POOL_CONNECTIONS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[POOL, STATE],
        help: "Open connections of a database pool, idle or in use",
        buckets: None,
    },
    MetricDef {
        name: DATABASE_POOL_MAX_CONNECTIONS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[POOL],
        help: "The most connections a database pool opens",
        buckets: None,
    },
    MetricDef {
        name: DATABASE_POOL_WAITS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[POOL],
        help: "Acquisitions from a database pool that waited for a connection",
        buckets: None,
    },
    MetricDef {
        name: QUERY_CACHE_HITS_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Query results served from the query result cache",
        buckets: None,
    },
    MetricDef {
        name: QUERY_CACHE_MISSES_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Query result cache lookups that found nothing",
        buckets: None,
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
        name: NETWORK_IO_BYTES_TOTAL,
        kind: MetricKind::Counter,
        unit: Unit::Bytes,
        labels: &[DIRECTION],
        help: "The machine's network traffic since boot, received and transmitted",
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
    MetricDef {
        name: PERFORMANCE_ALERTS_ACTIVE,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[ALERT, SEVERITY],
        help: "1 while an alert fires, 0 once it resolved (background evaluation)",
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
    if PREFIX.get().is_none() {
        if prefix.is_empty() {
            return Ok(());
        }
        if EMITTED_UNPREFIXED.load(Ordering::Acquire) {
            return Err(PrefixError::AlreadyEmitted);
        }
    }
    // The first prefix set stays, whoever set it: a later call only checks it is the same.
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
    if set.prefix == prefix {
        Ok(())
    } else {
        Err(PrefixError::AlreadySet {
            current: set.prefix.clone(),
        })
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

// ----- values held back for batching -----

/// Holds metric values back to give them to the recorder in batches, or reads them when
/// asked (gauges of what is running now).
pub(crate) trait Batched: Send + Sync {
    /// Gives the recorder every value held back so far, and sets the gauges read now.
    fn flush(&self);
}

/// What [`flush`] reaches: everything batching values, for as long as it lives.
static BATCHED: Mutex<Vec<Weak<dyn Batched>>> = Mutex::new(Vec::new());

pub(crate) fn register_batched(batched: Weak<dyn Batched>) {
    let mut all = BATCHED.lock();
    all.retain(|batched| batched.strong_count() > 0);
    all.push(batched);
}

/// Gives the `metrics` recorder every value perf holds back, now: the latencies
/// (`processing_time_seconds`) and outcomes (`async_operations_total`) of monitored calls,
/// which each thread hands over in batches of 128 calls. On return, every call that ended
/// before it was called is in the recorder, on every thread and of every optimizer, threads
/// that have exited included. It also gives the query result cache's hits and misses
/// ([`QUERY_CACHE_HITS_TOTAL`], [`QUERY_CACHE_MISSES_TOTAL`]) and sets the task pools'
/// gauges ([`TASKS_RUNNING`], [`TASKS_QUEUED`]) from what runs now. (Several task managers
/// in one process set the same gauges: the last one flushed is shown.)
///
/// perf-http's `/metrics` calls it before rendering, and an optimizer's background loops and
/// [`publish_metrics`](crate::PerformanceOptimizer::publish_metrics) call it too (the loops
/// every second, which bounds how late a scrape can be otherwise). A service that renders
/// its exporter itself calls it first:
///
/// ```
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let optimizer = perf_core::PerformanceOptimizer::builder().build()?;
/// metrics::with_local_recorder(&recorder, || drop(optimizer.monitor().start("render.check")));
///
/// perf_core::metrics::flush(); // then render
/// let calls: Vec<DebugValue> = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .filter(|(key, ..)| key.key().name() == "async_operations_total")
///     .map(|(.., value)| value)
///     .collect();
/// assert!(calls.contains(&DebugValue::Counter(1)), "{calls:?}");
/// # Ok::<_, perf_core::Error>(())
/// ```
///
/// Called from inside the recorder while this thread is handing a batch over, it returns at
/// once.
pub fn flush() {
    let live: Vec<Arc<dyn Batched>> = BATCHED.lock().iter().filter_map(Weak::upgrade).collect();
    for batched in live {
        batched.flush();
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
