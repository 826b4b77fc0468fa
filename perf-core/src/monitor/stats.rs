//! In-process statistics of monitored operations: counts by status, mean, bucketed
//! percentiles and the maximum.
//!
//! Each thread counts into a tally of its own (a load and a store per figure, no locked
//! instruction, no cache line shared with another thread), so that two threads timing the
//! same operation do not slow each other down; a snapshot adds the tallies up, and is exact at
//! any moment. A thread's tally outlives it: the next thread on its stripe counts on.

use std::{
    iter,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

use super::Status;
use crate::striped::{PerThread, add_own};

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

/// One thread's counts (or, for threads without a stripe, everyone's, added atomically).
struct Tally {
    by_status: [AtomicU64; Status::ALL.len()],
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            by_status: Default::default(),
            total_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    /// Counts a call, as this tally's only writer.
    #[inline]
    fn count_own(&self, status: Status, nanos: u64) {
        add_own(&self.by_status[status as usize], 1);
        add_own(&self.total_nanos, nanos);
        if let Some(bucket) = self.buckets.get(bucket_of(nanos)) {
            add_own(bucket, 1);
        }
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    /// Counts a call, as one of several writers.
    fn count_shared(&self, status: Status, nanos: u64) {
        self.by_status[status as usize].fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(bucket) = self.buckets.get(bucket_of(nanos)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // A new maximum is rare once warm: read before paying for an atomic update.
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }
}

/// One operation's in-process statistics.
#[derive(Default)]
pub(crate) struct OperationStats {
    threads: PerThread<Tally>,
    shared: Tally,
}

impl std::fmt::Debug for OperationStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationStats").finish_non_exhaustive()
    }
}

impl OperationStats {
    #[inline]
    pub(crate) fn record(&self, status: Status, nanos: u64) {
        match self.threads.mine() {
            Some(tally) => tally.count_own(status, nanos),
            None => self.shared.count_shared(status, nanos),
        }
    }

    pub(crate) fn snapshot(&self, operation: &str) -> OperationSnapshot {
        let mut by_status = [0u64; Status::ALL.len()];
        let mut counts = vec![0u64; BUCKETS];
        let (mut total, mut max_nanos) = (0u64, 0);
        for tally in self.threads.iter().chain(iter::once(&self.shared)) {
            for (sum, n) in by_status.iter_mut().zip(&tally.by_status) {
                *sum = sum.wrapping_add(n.load(Ordering::Relaxed));
            }
            for (sum, n) in counts.iter_mut().zip(&tally.buckets) {
                *sum += n.load(Ordering::Relaxed);
            }
            total = total.wrapping_add(tally.total_nanos.load(Ordering::Relaxed));
            max_nanos = max_nanos.max(tally.max_nanos.load(Ordering::Relaxed));
        }
        let by = |status: Status| by_status[status as usize];
        let count: u64 = counts.iter().sum();
        let max_seconds = max_nanos as f64 / 1e9;
        OperationSnapshot {
            operation: operation.to_owned(),
            count: by_status.iter().sum(),
            errors: by(Status::Error),
            panics: by(Status::Panic),
            cancelled: by(Status::Cancelled),
            timeouts: by(Status::Timeout),
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
    /// `performance_context` or [`Monitor::start`](super::Monitor::start).
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

    /// Threads' own tallies and the shared one add up exactly, a thread's after it exited.
    #[test]
    fn counts_from_every_thread_add_up_exactly() {
        let stats = OperationStats::default();
        std::thread::scope(|s| {
            for thread in 0..4u64 {
                let stats = &stats;
                s.spawn(move || {
                    for i in 0..1000u64 {
                        let status = if i.is_multiple_of(4) {
                            Status::Error
                        } else {
                            Status::Success
                        };
                        stats.record(status, 1_000 * (thread + 1));
                    }
                });
            }
        });
        stats.shared.count_shared(Status::Panic, 9_000);
        let snap = stats.snapshot("op");
        assert_eq!((snap.count, snap.errors, snap.panics), (4001, 1000, 1));
        let total_nanos = 1000 * (1_000 + 2_000 + 3_000 + 4_000) + 9_000;
        assert!((snap.mean_seconds - total_nanos as f64 / 4001.0 / 1e9).abs() < 1e-15);
        assert!((snap.max_seconds - 9e-6).abs() < 1e-15);
    }
}
