//! What the benchmarks share: timing threads that start together, and reading criterion's
//! results back to print ratios. Each benchmark uses only some of it.
#![allow(dead_code)]

use std::{
    hint::black_box,
    path::PathBuf,
    sync::{Barrier, LazyLock},
    time::{Duration, Instant, SystemTime},
};

/// Runs `work(thread, barrier)` on `threads` threads; each sets up, waits on the barrier, then
/// times its own work. Returns the slowest thread's time.
pub(crate) fn slowest_thread(
    threads: usize,
    work: impl Fn(usize, &Barrier) -> Duration + Sync,
) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || work(thread, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

/// A current-thread tokio runtime, as each bench thread runs its async calls on.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The slowest of `threads` threads' time to await `iters` calls of `call`, each thread on a
/// runtime of its own, with the keys that `keys(thread)` gives it in turn. Each thread makes
/// one call untimed first: it is new, and thread-local tables (a floor's, a map's) are built
/// on its first call (at 100k keys that was 25-50 ns of every timed call).
pub(crate) fn awaited_calls<Keys, K, F, Fut>(
    threads: usize,
    iters: u64,
    keys: Keys,
    call: F,
) -> Duration
where
    Keys: Fn(usize) -> K + Sync,
    K: FnMut() -> u64,
    F: Fn(u64) -> Fut + Sync,
    Fut: Future,
{
    slowest_thread(threads, |thread, barrier| {
        let mut next_key = keys(thread);
        let runtime = runtime();
        black_box(runtime.block_on(call(next_key())));
        barrier.wait();
        let start = Instant::now();
        runtime.block_on(async {
            for _ in 0..iters {
                black_box(call(next_key()).await);
            }
        });
        start.elapsed()
    })
}

/// The median of a round's figures (the upper one of an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// When this run started: criterion's results written before it are an earlier run's.
static RUN_STARTED: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// Marks the start of the run, for [`median_ns`]; called first in `main`.
pub(crate) fn run_starts() {
    LazyLock::force(&RUN_STARTED);
}

/// The median, in nanoseconds, that criterion recorded for `group/bench` in this run; `None`
/// if it did not run it (a filter left it out: the file on disk is then an earlier run's).
pub(crate) fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let path = dir
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    if written < *RUN_STARTED {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Contenders measured in alternation, round after round, so that a shared machine's drift
/// hits them all alike (criterion measures each contender in one stretch, which can favour
/// whichever ran in a quiet moment): every round's times, one per arm.
pub(crate) struct Interleaved {
    rounds: Vec<Vec<f64>>,
}

impl Interleaved {
    /// The arm's median time.
    pub(crate) fn median(&self, arm: usize) -> f64 {
        median(self.rounds.iter().map(|times| times[arm]).collect())
    }

    /// The median over rounds of `arm`'s time over `base`'s in the same round: the ratio to
    /// trust.
    pub(crate) fn ratio(&self, arm: usize, base: usize) -> f64 {
        self.per_round(arm, base, |t, b| t / b)
    }

    /// The median over rounds of `arm`'s time less `base`'s in the same round.
    pub(crate) fn excess(&self, arm: usize, base: usize) -> f64 {
        self.per_round(arm, base, |t, b| t - b)
    }

    fn per_round(&self, arm: usize, base: usize, compare: impl Fn(f64, f64) -> f64) -> f64 {
        let compared = self
            .rounds
            .iter()
            .map(|times| compare(times[arm], times[base]));
        median(compared.collect())
    }
}

/// Runs `rounds` rounds of `arms` arms; `measure(arm, round)` gives the arm's time per
/// operation. The order of the arms turns from round to round, so that none always runs first.
pub(crate) fn interleaved(
    arms: usize,
    rounds: usize,
    mut measure: impl FnMut(usize, usize) -> f64,
) -> Interleaved {
    let rounds = (0..rounds)
        .map(|round| {
            let mut times = vec![0.0; arms];
            for turn in 0..arms {
                let arm = (round + turn) % arms;
                times[arm] = measure(arm, round);
            }
            times
        })
        .collect();
    Interleaved { rounds }
}
