//! Operation timing: the registry behind `#[performance_monitor]` and
//! [`performance_context`](crate::performance_context).
//!
//! Every monitored operation records `processing_time_seconds{operation}` and
//! `async_operations_total{operation,status}`, and keeps in-process statistics (count, errors,
//! mean, p50/p95/p99, max) in its optimizer's [`Monitor`]. A macro call site resolves its
//! metric handles and statistics once, on its first call, so that later calls do no registry
//! lookup; install the `metrics` recorder before the first monitored call.
//!
//! With `profiling_enabled`, each `#[performance_monitor]` call also runs inside a `tracing`
//! span named after its operation (entered on every poll of an async call), so that
//! span-based profilers (tracing-flame, tokio-console, OpenTelemetry) see the operations.
//! Off, the check costs one relaxed load.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::RwLock;
use serde::Serialize;

use crate::{
    metrics::{ASYNC_OPERATIONS_TOTAL, PROCESSING_TIME_SECONDS, labels},
    striped::StripedCounters,
};

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

/// Latency buckets: four per power of two of nanoseconds, 1 ns to ~5 minutes.
const SUB_BUCKETS: u32 = 4;
pub(crate) const BUCKETS: usize = 39 * SUB_BUCKETS as usize;

pub(crate) fn bucket_of(nanos: u64) -> usize {
    let nanos = nanos.max(1);
    let power = 63 - nanos.leading_zeros();
    // The two bits below the leading one pick the sub-bucket.
    let sub = if power >= 2 {
        (nanos >> (power - 2)) & 3
    } else {
        0
    } as u32;
    ((power * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

/// The largest value a bucket holds, in nanoseconds.
fn bucket_ceiling(index: usize) -> u64 {
    let power = index as u32 / SUB_BUCKETS;
    let sub = u64::from(index as u32 % SUB_BUCKETS);
    if power < 2 {
        // Values below 4 ns have no sub-buckets.
        return (1u64 << (power + 1)) - 1;
    }
    ((5 + sub) << (power - 2)) - 1
}

/// The `q` quantile, in seconds, of the latencies counted per bucket in `counts` (the bucket's
/// upper bound: within 25% above the true value); 0 when nothing was counted.
pub(crate) fn quantile_seconds(counts: &[u64], q: f64) -> f64 {
    let count: u64 = counts.iter().sum();
    if count == 0 {
        return 0.0;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_ceiling(index) as f64 / 1e9;
        }
    }
    0.0
}

/// The counter after the one per status: total nanoseconds.
const TOTAL_NANOS: usize = Status::ALL.len();

/// One operation's in-process statistics.
pub struct OperationStats {
    counters: StripedCounters<{ TOTAL_NANOS + 1 }>,
    buckets: Box<[AtomicU64]>,
    max_nanos: AtomicU64,
}

impl fmt::Debug for OperationStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationStats").finish_non_exhaustive()
    }
}

impl Default for OperationStats {
    fn default() -> Self {
        Self {
            counters: StripedCounters::default(),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_nanos: AtomicU64::new(0),
        }
    }
}

impl OperationStats {
    pub(crate) fn record(&self, status: Status, nanos: u64) {
        self.counters.add(status as usize, 1);
        self.counters.add(TOTAL_NANOS, nanos);
        if let Some(bucket) = self.buckets.get(bucket_of(nanos)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // A new maximum is rare once warm: read before paying for an atomic update.
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, operation: &str) -> OperationSnapshot {
        let by_status = |status: Status| self.counters.sum(status as usize);
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let total = self.counters.sum(TOTAL_NANOS);
        let max_seconds = self.max_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        OperationSnapshot {
            operation: operation.to_owned(),
            count: Status::ALL.iter().map(|&s| by_status(s)).sum(),
            errors: by_status(Status::Error),
            panics: by_status(Status::Panic),
            cancelled: by_status(Status::Cancelled),
            timeouts: by_status(Status::Timeout),
            mean_seconds: if count == 0 {
                0.0
            } else {
                total as f64 / count as f64 / 1e9
            },
            // A bucket's upper bound can pass the largest value seen in it.
            p50_seconds: quantile_seconds(&counts, 0.50).min(max_seconds),
            p95_seconds: quantile_seconds(&counts, 0.95).min(max_seconds),
            p99_seconds: quantile_seconds(&counts, 0.99).min(max_seconds),
            max_seconds,
        }
    }
}

/// One operation's statistics at a moment, counted since its first call. Percentiles are
/// bucket upper bounds: within 25% above the true value, and never above the maximum.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OperationSnapshot {
    /// The operation's name: the `#[performance_monitor]` argument, or the name given to
    /// `performance_context` or [`Monitor::start`].
    pub operation: String,
    /// Calls recorded, of every [`Status`] (cancelled ones included).
    pub count: u64,
    /// Calls that ended with [`Status::Error`].
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Async calls dropped before they finished.
    pub cancelled: u64,
    /// Calls stopped at their timeout (managed tasks).
    pub timeouts: u64,
    /// Mean duration over every call, in seconds; 0 before the first.
    pub mean_seconds: f64,
    /// Median duration, in seconds.
    pub p50_seconds: f64,
    /// 95th percentile duration, in seconds.
    pub p95_seconds: f64,
    /// 99th percentile duration, in seconds.
    pub p99_seconds: f64,
    /// The longest call, in seconds (exact, not bucketed).
    pub max_seconds: f64,
}

/// The operations an optimizer has seen.
#[derive(Debug, Default)]
pub struct Monitor {
    operations: RwLock<HashMap<Arc<str>, Arc<OperationStats>>>,
    /// `profiling_enabled`, shared with every operation's handles.
    profiling: Arc<AtomicBool>,
}

impl Monitor {
    pub(crate) fn new(profiling: bool) -> Self {
        let monitor = Self::default();
        monitor.set_profiling(profiling);
        monitor
    }

    pub(crate) fn set_profiling(&self, on: bool) {
        self.profiling.store(on, Ordering::Relaxed);
    }

    fn operation(&self, name: &str) -> Arc<OperationStats> {
        if let Some(stats) = self.operations.read().get(name) {
            return Arc::clone(stats);
        }
        let mut operations = self.operations.write();
        Arc::clone(operations.entry(Arc::from(name)).or_default())
    }

    /// Every operation's statistics, sorted by name.
    pub fn snapshot(&self) -> Vec<OperationSnapshot> {
        let mut all: Vec<_> = self
            .operations
            .read()
            .iter()
            .map(|(name, stats)| stats.snapshot(name))
            .collect();
        all.sort_by(|a, b| a.operation.cmp(&b.operation));
        all
    }

    /// One operation's statistics, if it has run.
    pub fn operation_snapshot(&self, name: &str) -> Option<OperationSnapshot> {
        self.operations
            .read()
            .get(name)
            .map(|stats| stats.snapshot(name))
    }

    /// Starts timing an operation named at run time (a registry lookup per call).
    pub fn start(&self, name: &str) -> Timing {
        Timing::with(&self.handles(name))
    }

    /// An operation's handles, for a component that times many calls of it.
    pub(crate) fn handles(&self, name: &str) -> Arc<Handles> {
        Arc::new(Handles::resolve(name, self))
    }
}

/// What recording one operation needs: its metric handles and statistics.
#[derive(Debug)]
pub struct Handles {
    latency: metrics::Histogram,
    outcomes: [metrics::Counter; Status::ALL.len()],
    stats: Arc<OperationStats>,
    profiling: Arc<AtomicBool>,
}

impl Handles {
    pub(crate) fn stats(&self) -> &OperationStats {
        &self.stats
    }

    fn resolve(name: &str, monitor: &Monitor) -> Self {
        let operation = name.to_owned();
        Self {
            latency: metrics::histogram!(crate::metrics::name(PROCESSING_TIME_SECONDS), labels::OPERATION => operation.clone()),
            outcomes: Status::ALL.map(|status| {
                metrics::counter!(
                    crate::metrics::name(ASYNC_OPERATIONS_TOTAL),
                    labels::OPERATION => operation.clone(),
                    labels::STATUS => status.as_str()
                )
            }),
            stats: monitor.operation(name),
            profiling: Arc::clone(&monitor.profiling),
        }
    }

    fn record(&self, status: Status, started: quanta::Instant) {
        let elapsed: Duration = clock().now().saturating_duration_since(started);
        self.latency.record(elapsed.as_secs_f64());
        self.outcomes[status as usize].increment(1);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.stats.record(status, nanos);
    }
}

/// The clock monitored calls are timed with: the TSC where it is reliable, which reads in a
/// few nanoseconds where the OS clock takes tens.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A call site's handles live as long as the program; a run-time name's are shared.
#[derive(Debug)]
enum HandlesRef {
    Static(&'static Handles),
    Owned(Arc<Handles>),
}

impl std::ops::Deref for HandlesRef {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        match self {
            HandlesRef::Static(handles) => handles,
            HandlesRef::Owned(handles) => handles,
        }
    }
}

/// A `#[performance_monitor]` call site: handles resolved once, against the monitor its first
/// call names.
#[derive(Debug)]
pub struct CallSite {
    name: &'static str,
    handles: OnceLock<Handles>,
}

impl CallSite {
    /// A call site timing operation `name`; `const`, so that it can be the site's `static`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            handles: OnceLock::new(),
        }
    }

    /// Starts timing a call; `monitor` is asked once, on the site's first call.
    #[inline]
    pub fn start(&'static self, monitor: impl FnOnce() -> &'static Monitor) -> Timing {
        let handles = self
            .handles
            .get_or_init(|| Handles::resolve(self.name, monitor()));
        Timing::new(HandlesRef::Static(handles))
    }
}

/// A call being timed. [`finish`](Self::finish) records how it ended; dropped unfinished, it
/// records a panic (while unwinding) or a cancellation.
#[must_use = "a timing records when finished or dropped"]
#[derive(Debug)]
pub struct Timing {
    handles: HandlesRef,
    started: quanta::Instant,
    finished: bool,
}

impl Timing {
    /// Starts timing a call with handles resolved beforehand.
    pub(crate) fn with(handles: &Arc<Handles>) -> Self {
        Self::new(HandlesRef::Owned(Arc::clone(handles)))
    }

    /// Times from now on (the call waited before it started).
    pub(crate) fn restart(&mut self) {
        self.started = clock().now();
    }

    fn new(handles: HandlesRef) -> Self {
        Self {
            handles,
            started: clock().now(),
            finished: false,
        }
    }

    /// Whether the call is to run inside a `tracing` span (`profiling_enabled`).
    #[inline]
    pub fn profiling(&self) -> bool {
        self.handles.profiling.load(Ordering::Relaxed)
    }

    /// Records the call as ended with `status`, with the time since it started.
    pub fn finish(mut self, status: Status) {
        self.finished = true;
        self.handles.record(status, self.started);
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
            self.handles.record(status, self.started);
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
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for nanos in [1u64, 2, 3, 5, 100, 999, 1_000, 1_234_567, 10_000_000_000] {
            let index = bucket_of(nanos);
            assert!(bucket_ceiling(index) >= nanos, "{nanos} in {index}");
            if index > 0 {
                assert!(
                    bucket_ceiling(index - 1) < nanos,
                    "{nanos}: bucket {index} is the first to hold it"
                );
            }
            assert!(
                bucket_ceiling(index) as f64 <= nanos as f64 * 1.25 + 1.0,
                "{nanos}: within 25%"
            );
        }
    }

    #[test]
    fn percentiles_and_counts() {
        let stats = OperationStats::default();
        for ms in 1..=100u64 {
            let status = if ms % 10 == 0 {
                Status::Error
            } else {
                Status::Success
            };
            stats.record(status, ms * 1_000_000);
        }
        let snap = stats.snapshot("op");
        assert_eq!((snap.count, snap.errors), (100, 10));
        assert!(
            (0.050..=0.0625).contains(&snap.p50_seconds),
            "{}",
            snap.p50_seconds
        );
        assert!(
            (0.095..=0.125).contains(&snap.p95_seconds),
            "{}",
            snap.p95_seconds
        );
        assert!((snap.mean_seconds - 0.0505).abs() < 1e-9);
        assert!((snap.max_seconds - 0.1).abs() < 1e-9);
    }

    #[test]
    fn percentiles_never_pass_the_maximum() {
        let stats = OperationStats::default();
        // 70 ms sits low in its bucket, whose upper bound is above it.
        for _ in 0..10 {
            stats.record(Status::Success, 70_000_000);
        }
        let snap = stats.snapshot("op");
        assert!((snap.max_seconds - 0.07).abs() < 1e-9);
        for p in [snap.p50_seconds, snap.p95_seconds, snap.p99_seconds] {
            assert!(p <= snap.max_seconds, "{p} > {}", snap.max_seconds);
        }
        assert!(
            (snap.p99_seconds - 0.07).abs() < 1e-9,
            "capped at the maximum"
        );
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
