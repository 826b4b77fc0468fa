//! Operation timing: the registry behind `#[performance_monitor]` and
//! [`performance_context`](crate::performance_context).
//!
//! Every monitored operation records `processing_time_seconds{operation}` and
//! `async_operations_total{operation,status}`, and keeps in-process statistics (count, errors,
//! mean, p50/p95/p99, max) in its optimizer's [`Monitor`]. An operation's metric handles are
//! resolved once, when its monitor first sees it, and a macro call site keeps its operation
//! from its first call, so that later calls do no registry lookup: install the `metrics`
//! recorder before the first monitored call.
//!
//! A call costs two clock reads and a few stores into memory of its own thread: two threads
//! timing one operation share nothing on the way.
//! - The statistics are counted per thread and added up by a snapshot, which is exact at any
//!   moment (`stats`).
//! - The metrics are queued per thread and handed to the recorder in batches (`batch`): a
//!   scrape is exact after [`crate::metrics::flush`], which perf-http's `/metrics` and the
//!   optimizer's background publisher (every second) call. Queued calls cost about 3 KB per
//!   operation per thread that runs it.
//!
//! Calls are timed with the TSC where it is reliable ([`quanta`]'s raw counter, a few
//! nanoseconds where the OS clock takes tens), scaled to nanoseconds once per call. quanta's
//! `recent()` would be cheaper still but only as fine as its upkeep thread's tick
//! (milliseconds): too coarse for the calls it times.
//!
//! With `profiling_enabled`, each `#[performance_monitor]` call also runs inside a `tracing`
//! span named after its operation (entered on every poll of an async call), so that
//! span-based profilers (tracing-flame, tokio-console, OpenTelemetry) see the operations.
//! Off, the check costs one relaxed load.

mod batch;
mod stats;

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    sync::{Arc, OnceLock, Weak},
};

use parking_lot::RwLock;
use serde::Serialize;

use self::batch::Batcher;
pub use self::stats::OperationSnapshot;
pub(crate) use self::stats::{BUCKETS, OperationStats, bucket_of, quantile_seconds};
use crate::metrics::{ASYNC_OPERATIONS_TOTAL, Batched, PROCESSING_TIME_SECONDS, labels};
use crate::profiling::Profiling;
use crate::static_or_shared::StaticOrShared;

/// How a monitored call ended (the `status` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// It returned (`Ok`, for a `Result`); a context dropped without
    /// [`fail`](PerformanceContext::fail); a managed task that completed.
    Success = 0,
    /// It returned an `Err`, or its context was marked failed.
    Error = 1,
    /// It panicked: the timing or context was dropped while unwinding.
    Panic = 2,
    /// An async call dropped before it finished.
    Cancelled = 3,
    /// It ran out of time (managed tasks).
    Timeout = 4,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Success,
        Status::Error,
        Status::Panic,
        Status::Cancelled,
        Status::Timeout,
    ];

    /// The `status` label: `success`, `error`, `panic`, `cancelled` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Panic => "panic",
            Status::Cancelled => "cancelled",
            Status::Timeout => "timeout",
        }
    }
}

/// The operations an optimizer has seen.
#[derive(Debug, Default)]
pub struct Monitor {
    operations: RwLock<HashMap<Arc<str>, Arc<Operation>>>,
    /// `profiling_enabled`, shared with every operation and the optimizer's other components.
    profiling: Profiling,
}

impl Monitor {
    pub(crate) fn new(profiling: Profiling) -> Self {
        Self {
            operations: RwLock::default(),
            profiling,
        }
    }

    pub(crate) fn profiling(&self) -> &Profiling {
        &self.profiling
    }

    /// Operation `name`, made (its metric handles resolved) on the first call for it.
    pub(crate) fn operation(&self, name: &str) -> Arc<Operation> {
        if let Some(operation) = self.operations.read().get(name) {
            return Arc::clone(operation);
        }
        // Resolved outside the lock: the recorder may run monitored code.
        let made = Arc::new(Operation::resolve(name, &self.profiling));
        let mut operations = self.operations.write();
        match operations.entry(Arc::from(name)) {
            Entry::Occupied(found) => Arc::clone(found.get()),
            Entry::Vacant(slot) => {
                let weak: Weak<dyn Batched> = Arc::downgrade(&made) as Weak<Operation>;
                crate::metrics::register_batched(weak);
                Arc::clone(slot.insert(made))
            }
        }
    }

    /// Every operation's statistics, sorted by name.
    pub fn snapshot(&self) -> Vec<OperationSnapshot> {
        let mut all: Vec<_> = self
            .operations
            .read()
            .iter()
            .map(|(name, operation)| operation.stats.snapshot(name))
            .collect();
        all.sort_by(|a, b| a.operation.cmp(&b.operation));
        all
    }

    /// One operation's statistics, if it has run.
    pub fn operation_snapshot(&self, name: &str) -> Option<OperationSnapshot> {
        self.operations
            .read()
            .get(name)
            .map(|operation| operation.stats.snapshot(name))
    }

    /// Starts timing an operation named at run time (a registry lookup per call).
    pub fn start(&self, name: &str) -> Timing {
        Timing::new(OperationRef::Shared(self.operation(name)))
    }
}

/// One operation of one monitor: what recording a call of it needs.
pub(crate) struct Operation {
    metrics: Batcher,
    stats: OperationStats,
    profiling: Profiling,
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation").finish_non_exhaustive()
    }
}

impl Operation {
    pub(crate) fn stats(&self) -> &OperationStats {
        &self.stats
    }

    pub(crate) fn profiling(&self) -> &Profiling {
        &self.profiling
    }

    fn resolve(name: &str, profiling: &Profiling) -> Self {
        let operation = name.to_owned();
        let latency = metrics::histogram!(crate::metrics::name(PROCESSING_TIME_SECONDS), labels::OPERATION => operation.clone());
        let outcomes = Status::ALL.map(|status| {
            metrics::counter!(
                crate::metrics::name(ASYNC_OPERATIONS_TOTAL),
                labels::OPERATION => operation.clone(),
                labels::STATUS => status.as_str()
            )
        });
        Self {
            metrics: Batcher::new(latency, outcomes),
            stats: OperationStats::default(),
            profiling: profiling.clone(),
        }
    }

    #[inline]
    fn record(&self, status: Status, started: u64) {
        let clock = clock();
        let nanos = clock.delta_as_nanos(started, clock.raw());
        self.stats.record(status, nanos);
        self.metrics.record(status, nanos);
    }
}

impl Batched for Operation {
    fn flush(&self) {
        self.metrics.flush();
    }
}

/// The clock monitored calls are timed with: the TSC where it is reliable, which reads in a
/// few nanoseconds where the OS clock takes tens.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A call site's operation lives as long as the program; a run-time name's is shared.
type OperationRef = StaticOrShared<Operation>;

/// A `#[performance_monitor]` call site: its operation found once, in the monitor its first
/// call names.
#[derive(Debug)]
pub struct CallSite {
    name: &'static str,
    operation: OnceLock<Arc<Operation>>,
}

impl CallSite {
    /// A call site timing operation `name`; `const`, so that it can be the site's `static`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            operation: OnceLock::new(),
        }
    }

    /// Starts timing a call; `monitor` is asked once, on the site's first call.
    #[inline]
    pub fn start(&'static self, monitor: impl FnOnce() -> &'static Monitor) -> Timing {
        let operation = self
            .operation
            .get_or_init(|| monitor().operation(self.name));
        Timing::new(OperationRef::Static(operation))
    }
}

/// A call being timed. [`finish`](Self::finish) records how it ended; dropped unfinished, it
/// records a panic (while unwinding) or a cancellation.
#[must_use = "a timing records when finished or dropped"]
#[derive(Debug)]
pub struct Timing {
    operation: OperationRef,
    /// The clock's raw reading at the start.
    started: u64,
    finished: bool,
}

impl Timing {
    /// Starts timing a call of an operation found beforehand.
    pub(crate) fn with(operation: &Arc<Operation>) -> Self {
        Self::new(OperationRef::Shared(Arc::clone(operation)))
    }

    /// Times from now on (the call waited before it started).
    pub(crate) fn restart(&mut self) {
        self.started = clock().raw();
    }

    fn new(operation: OperationRef) -> Self {
        Self {
            operation,
            started: clock().raw(),
            finished: false,
        }
    }

    /// Whether the call is to run inside a `tracing` span (`profiling_enabled`).
    #[inline]
    pub fn profiling(&self) -> bool {
        self.operation.profiling.is_on()
    }

    /// Records the call as ended with `status`, with the time since it started.
    pub fn finish(mut self, status: Status) {
        self.finished = true;
        self.operation.record(status, self.started);
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if !self.finished {
            let status = if std::thread::panicking() {
                Status::Panic
            } else {
                Status::Cancelled
            };
            self.operation.record(status, self.started);
        }
    }
}

/// A scope timed as an operation: records on drop, as a success unless [`fail`](Self::fail)
/// was called or the scope is unwinding from a panic. Hold it across `.await` freely.
///
/// ```
/// let scope = perf_core::performance_context("batch_processing");
/// // ... work ...
/// drop(scope); // or let it fall out of scope
/// ```
#[must_use = "the context records when dropped; bind it to a variable"]
#[derive(Debug)]
pub struct PerformanceContext {
    timing: Option<Timing>,
    failed: bool,
}

impl PerformanceContext {
    /// Marks the scope as failed: it records status `error`.
    pub fn fail(&mut self) {
        self.failed = true;
    }
}

impl Drop for PerformanceContext {
    fn drop(&mut self) {
        let Some(timing) = self.timing.take() else {
            return;
        };
        let status = if std::thread::panicking() {
            Status::Panic
        } else if self.failed {
            Status::Error
        } else {
            Status::Success
        };
        timing.finish(status);
    }
}

/// Times the scope it is held in as operation `name` on `monitor`
/// ([`performance_context`](crate::performance_context) uses the global optimizer's).
pub fn performance_context_on(monitor: &Monitor, name: &str) -> PerformanceContext {
    PerformanceContext {
        timing: Some(monitor.start(name)),
        failed: false,
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// Calls of two operations from two threads that have exited and one still running: the
    /// statistics are exact at once, the recorder after [`crate::metrics::flush`].
    #[test]
    fn a_flush_makes_every_operations_metrics_exact() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let monitor = Monitor::default();
        let [a, b] = metrics::with_local_recorder(&recorder, || {
            ["flush.a", "flush.b"].map(|name| monitor.operation(name))
        });
        let calls = |operation: &Arc<Operation>, n: u64| {
            for i in 0..n {
                let status = if i.is_multiple_of(4) {
                    Status::Error
                } else {
                    Status::Success
                };
                Timing::with(operation).finish(status);
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| calls(&a, 1000));
            s.spawn(|| {
                calls(&a, 500);
                calls(&b, 300);
            });
        });
        calls(&b, 50);
        let counts = |name| {
            let snap = monitor.operation_snapshot(name).expect("ran");
            (snap.count, snap.errors)
        };
        assert_eq!(counts("flush.a"), (1500, 375));
        assert_eq!(counts("flush.b"), (350, 88));

        crate::metrics::flush();
        let mut recorded = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let label = |name| {
                key.key()
                    .labels()
                    .find(|label| label.key() == name)
                    .map(|label| label.value().to_owned())
            };
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(latencies) => latencies.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            let what = label(labels::STATUS).unwrap_or_else(|| "latencies".into());
            recorded.insert((label(labels::OPERATION).expect("an operation"), what), n);
        }
        let of = |operation: &str, what: &str| recorded[&(operation.to_owned(), what.to_owned())];
        assert_eq!(of("flush.a", "success"), 1125);
        assert_eq!(of("flush.a", "error"), 375);
        assert_eq!(of("flush.a", "latencies"), 1500);
        assert_eq!(of("flush.b", "success"), 262);
        assert_eq!(of("flush.b", "error"), 88);
        assert_eq!(of("flush.b", "latencies"), 350);
    }

    #[test]
    fn a_context_records_success_failure_and_panic() {
        let monitor = Monitor::default();
        drop(performance_context_on(&monitor, "scope"));
        let mut failed = performance_context_on(&monitor, "scope");
        failed.fail();
        drop(failed);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _scope = performance_context_on(&monitor, "scope");
            panic!("boom");
        }));
        assert!(panicked.is_err());
        let snap = monitor.operation_snapshot("scope").expect("recorded");
        assert_eq!((snap.count, snap.errors, snap.panics), (3, 1, 1));
    }
}
