//! The task manager's statistics.

use serde::Serialize;

use crate::monitor::OperationSnapshot;

/// Counts since the manager was made, and what is queued and running now.
///
/// The counts by outcome (`completed` to `cancelled`) are of tasks that ended; a task
/// cancelled while still queued counts as `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStats {
    /// Tasks accepted, async and blocking.
    pub submitted: u64,
    /// Waiting for a worker now.
    pub queued: u64,
    /// Async tasks running now.
    pub running: u64,
    /// Blocking tasks running now.
    pub running_blocking: u64,
    /// The async pool's size now (`max_workers`, as last set).
    pub max_workers: u64,
    /// Tasks that returned `Ok`.
    pub completed: u64,
    /// Tasks that returned `Err`.
    pub failed: u64,
    /// Tasks that panicked (the pool caught it).
    pub panicked: u64,
    /// Tasks still running at their timeout.
    pub timed_out: u64,
    /// Tasks cancelled, queued or running: by their handle, `cancel_all` or a shutdown.
    pub cancelled: u64,
    /// `(failed + panicked + timed_out) / finished`, 0 before any task finished.
    pub failure_rate: f64,
    /// From submission to a worker (timed on one task in eight).
    pub queue_wait: LatencyStats,
    /// From start to end, by every outcome.
    pub run_time: LatencyStats,
}

/// A latency distribution, in seconds; each percentile is a histogram bucket's upper bound,
/// within 25% above the true value. All 0 before anything was timed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyStats {
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The longest.
    pub max: f64,
}

impl LatencyStats {
    fn of(snapshot: &OperationSnapshot) -> Self {
        Self {
            mean: snapshot.mean_seconds,
            p50: snapshot.p50_seconds,
            p95: snapshot.p95_seconds,
            p99: snapshot.p99_seconds,
            max: snapshot.max_seconds,
        }
    }
}

impl TaskStats {
    pub(super) fn new(
        submitted: u64,
        queued: u64,
        running: u64,
        running_blocking: u64,
        max_workers: u64,
        run: OperationSnapshot,
        queue_wait: OperationSnapshot,
    ) -> Self {
        let failed = run.errors;
        let bad = failed + run.panics + run.timeouts;
        // The counts are read one by one while tasks record: saturate, never underflow.
        let completed = run.count.saturating_sub(bad + run.cancelled);
        let finished = completed + bad;
        Self {
            submitted,
            queued,
            running,
            running_blocking,
            max_workers,
            completed,
            failed,
            panicked: run.panics,
            timed_out: run.timeouts,
            cancelled: run.cancelled,
            failure_rate: if finished == 0 {
                0.0
            } else {
                bad as f64 / finished as f64
            },
            queue_wait: LatencyStats::of(&queue_wait),
            run_time: LatencyStats::of(&run),
        }
    }
}
