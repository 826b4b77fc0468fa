//! Monitored calls on their way to the `metrics` recorder, batched per thread.
//!
//! # Why
//!
//! Recording a call straight into the recorder's storage costs little on one thread but a
//! lot on several: metrics-exporter-prometheus keeps a histogram's raw samples in one shared
//! bucket and a counter in one shared atomic, so threads timing the same operation fight over
//! their cache lines, and measured 190-290 ns per call on 2 threads against 80 on one.
//!
//! # How
//!
//! Each thread keeps its operation's calls in a ring of its own ([`Pending`]), one word per
//! call (the latency and the status), written without a locked instruction. When a ring holds
//! [`BATCH`] calls, its thread hands them over: each latency to the histogram, and one
//! `increment(n)` per status to the counters. One thread at a time hands over per operation
//! (a `try_lock`: a thread that finds another one at it carries on and tries at its next
//! call), so that the recorder's storage stays on one core for a whole batch. A thread whose
//! ring fills while another hands over waits for its turn: the recorder is then the
//! bottleneck (30-40 ns a latency for the Prometheus exporter), and threads taking turns in
//! it go faster than threads contending in it (measured: 135-150 ns per call on 2 threads when
//! a full ring recorded directly). Only a call made from inside the recorder, whose thread
//! cannot wait for itself, records directly when its ring is full, and so does a thread
//! without a stripe of its own (more than 63 live threads, or one tearing down).
//!
//! A batch is handed over with the time read once for it (see [`Batcher::hand_over`]).
//!
//! [`crate::metrics::flush`] hands over every thread's ring, those of threads that have
//! exited included (a ring outlives its thread). perf-http's `/metrics` calls it before
//! rendering, and so does the optimizer's background publisher every second, which bounds
//! the lag of a scrape that does not. Values are exact once flushed: every call is handed over
//! exactly once, as the same latency it would have been recorded with.
//!
//! # Failure paths
//!
//! - Nothing is locked while user code or the monitored function runs; the recorder runs
//!   under the operation's hand-over lock, which does not poison (parking_lot).
//! - A recorder that panics mid-batch: what was handed over before the panic is counted and
//!   not handed over again (a guard settles the batch on unwind); the rest stays queued.
//! - Re-entrancy: a monitored call made by the recorder (or by a `Drop` it runs) queues or
//!   records directly, never waiting; a `flush` from inside the recorder returns at once
//!   rather than wait for the batch its own thread is handing over. Nothing else waits while
//!   holding a hand-over lock, so waits end.

use std::{
    cell::Cell,
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use metrics::{Counter, Histogram};
use parking_lot::Mutex;

use super::Status;
use crate::striped::PerThread;

/// Calls a thread's ring holds: four batches. Two threads calling one operation without
/// pause keep the recorder busy most of the time, and a thread whose ring fills during the
/// other's hand-over parks until its turn; with two batches that happened often enough to
/// cost 106-133 ns a call on 2 threads, with four 91-97 ns (`MONITOR_PROFILE=2`, `benches/
/// macros.rs`). 4 KiB per thread and operation.
const RING: usize = 512;
/// Calls in a ring that make its thread hand them over.
const BATCH: u64 = 128;

/// The low bits of a queued call hold its status, the rest its latency in nanoseconds.
const STATUS_BITS: u32 = 3;
const STATUS_MASK: u64 = (1 << STATUS_BITS) - 1;

fn encode(status: Status, nanos: u64) -> u64 {
    (nanos.min(u64::MAX >> STATUS_BITS) << STATUS_BITS) | status as u64
}

fn decode(call: u64) -> (Status, u64) {
    (
        Status::ALL[(call & STATUS_MASK) as usize],
        call >> STATUS_BITS,
    )
}

/// A latency as the histogram receives it.
fn seconds(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

thread_local! {
    /// Whether this thread is handing a batch over (the recorder is running on it).
    static HANDING_OVER: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as handing over until dropped.
struct HandingOver(bool);

impl HandingOver {
    fn enter() -> Self {
        Self(HANDING_OVER.replace(true))
    }
}

impl Drop for HandingOver {
    fn drop(&mut self) {
        HANDING_OVER.set(self.0);
    }
}

/// One thread's queued calls: a ring with one producer (the thread holding the stripe) and
/// consumers that take turns under [`Batcher::handing`].
struct Pending {
    calls: [AtomicU64; RING],
    /// Calls handed over so far; written by consumers.
    head: AtomicU64,
    /// Calls queued so far; written by the producer.
    tail: AtomicU64,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }
}

impl Pending {
    /// Queues a call; the calls now waiting, or `None` when full.
    #[inline]
    fn push(&self, call: u64) -> Option<u64> {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: a consumer's reads of the slots it freed come before this overwrite.
        let waiting = tail.wrapping_sub(self.head.load(Ordering::Acquire));
        if waiting >= RING as u64 {
            return None;
        }
        self.calls[tail as usize % RING].store(call, Ordering::Relaxed);
        // Release: the slot is written before a consumer sees it counted.
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(waiting + 1)
    }
}

/// One operation's metric handles, and the calls each thread holds back from them.
pub(super) struct Batcher {
    latency: Histogram,
    outcomes: [Counter; Status::ALL.len()],
    pending: PerThread<Pending>,
    /// Held while handing calls over: one thread at a time in this operation's storage.
    handing: Mutex<()>,
}

impl fmt::Debug for Batcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    pub(super) fn new(latency: Histogram, outcomes: [Counter; Status::ALL.len()]) -> Self {
        Self {
            latency,
            outcomes,
            pending: PerThread::default(),
            handing: Mutex::new(()),
        }
    }

    /// Records a call: queued on this thread, handed over with its batch.
    #[inline]
    pub(super) fn record(&self, status: Status, nanos: u64) {
        let Some(pending) = self.pending.mine() else {
            // A thread without a stripe of its own, or one tearing down.
            return self.record_now(status, nanos);
        };
        let call = encode(status, nanos);
        match pending.push(call) {
            Some(waiting) if waiting >= BATCH => self.try_hand_over(pending),
            Some(_) => {}
            // Called from inside the recorder: its batch is being handed over on this thread.
            None if HANDING_OVER.get() => self.record_now(status, nanos),
            None => {
                self.hand_over_waiting(pending);
                if pending.push(call).is_none() {
                    self.record_now(status, nanos);
                }
            }
        }
    }

    /// Records a call straight into the recorder; counted first, as in a batch.
    fn record_now(&self, status: Status, nanos: u64) {
        self.outcomes[status as usize].increment(1);
        self.latency.record(seconds(nanos));
    }

    /// Hands this thread's calls over, unless another thread is handing over already.
    #[cold]
    fn try_hand_over(&self, pending: &Pending) {
        let Some(_handing) = self.handing.try_lock() else {
            return;
        };
        let _on_this_thread = HandingOver::enter();
        self.hand_over(pending);
    }

    /// Hands this thread's calls over, waiting for another thread's hand-over to end: the
    /// recorder cannot keep up, and taking turns costs less than contending in it.
    #[cold]
    fn hand_over_waiting(&self, pending: &Pending) {
        let _handing = self.handing.lock();
        let _on_this_thread = HandingOver::enter();
        self.hand_over(pending);
    }

    /// Hands every thread's calls over: on return, every call recorded before the flush
    /// began is in the recorder. From inside the recorder, does nothing.
    pub(super) fn flush(&self) {
        if HANDING_OVER.get() {
            return;
        }
        let _handing = self.handing.lock();
        let _on_this_thread = HandingOver::enter();
        for pending in self.pending.iter() {
            self.hand_over(pending);
        }
    }

    /// Gives the calls queued in `pending` to the recorder; the caller holds `handing`, or
    /// the batcher itself.
    ///
    /// The recorder reads the time once for the batch: the Prometheus exporter stamps each
    /// latency it receives with `quanta::Instant::now()` (for summaries' windows), a TSC read
    /// per latency, in the part of a call that threads take turns at. With quanta's clock for
    /// this thread set to the hand-over's start, the batch's latencies are stamped with that,
    /// as they would be one by one within microseconds (measured: 7 ns less per call).
    fn hand_over(&self, pending: &Pending) {
        let (clock, now) = quanta::Clock::mock();
        now.increment(quanta::Instant::now().duration_since(clock.now()));
        quanta::with_clock(&clock, || self.record_batch(pending));
    }

    fn record_batch(&self, pending: &Pending) {
        // Acquire: the slots up to `end` are written.
        let end = pending.tail.load(Ordering::Acquire);
        let mut batch = Batch {
            batcher: self,
            pending,
            next: pending.head.load(Ordering::Relaxed),
            outcomes: [0; Status::ALL.len()],
        };
        while batch.next != end {
            let call = pending.calls[batch.next as usize % RING].load(Ordering::Relaxed);
            let (status, nanos) = decode(call);
            batch.next = batch.next.wrapping_add(1);
            batch.outcomes[status as usize] += 1;
            self.latency.record(seconds(nanos));
        }
    }
}

impl Drop for Batcher {
    /// Hands over what is left (the operation's monitor is dropped).
    fn drop(&mut self) {
        for pending in self.pending.iter() {
            self.hand_over(pending);
        }
    }
}

/// The calls of one hand-over that went to the histogram, settled when it ends, on a panic in
/// the recorder too: their counts go to the counters and their slots are freed.
struct Batch<'a> {
    batcher: &'a Batcher,
    pending: &'a Pending,
    next: u64,
    outcomes: [u64; Status::ALL.len()],
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for (counter, &n) in self.batcher.outcomes.iter().zip(&self.outcomes) {
            if n > 0 {
                counter.increment(n);
            }
        }
        // Release: the slots are read before the producer may overwrite them.
        self.pending.head.store(self.next, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock, Weak};

    use metrics::{CounterFn, HistogramFn};

    use super::*;

    /// Something to do (once) when a given latency arrives, before it is stored.
    type Hook = (f64, Box<dyn FnOnce() + Send>);

    /// What a batcher's handles received, and what its histogram does on a given latency.
    #[derive(Default)]
    struct Received {
        latencies: Mutex<Vec<f64>>,
        outcomes: [AtomicU64; Status::ALL.len()],
        on: Mutex<Option<Hook>>,
    }

    struct Latencies(Arc<Received>);

    impl HistogramFn for Latencies {
        fn record(&self, value: f64) {
            let hook = self.0.on.lock().take_if(|(at, _)| *at == value);
            if let Some((_, hook)) = hook {
                hook();
            }
            self.0.latencies.lock().push(value);
        }
    }

    struct Outcome(Arc<Received>, usize);

    impl CounterFn for Outcome {
        fn increment(&self, n: u64) {
            self.0.outcomes[self.1].fetch_add(n, Ordering::Relaxed);
        }

        fn absolute(&self, _: u64) {}
    }

    fn batcher() -> (Arc<Batcher>, Arc<Received>) {
        let received = Arc::new(Received::default());
        let latency = Histogram::from_arc(Arc::new(Latencies(Arc::clone(&received))));
        let outcomes =
            std::array::from_fn(|i| Counter::from_arc(Arc::new(Outcome(Arc::clone(&received), i))));
        (Arc::new(Batcher::new(latency, outcomes)), received)
    }

    impl Received {
        fn latencies(&self) -> Vec<f64> {
            let mut all = self.latencies.lock().clone();
            all.sort_by(f64::total_cmp);
            all
        }

        fn outcomes(&self) -> [u64; Status::ALL.len()] {
            std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed))
        }
    }

    /// `calls` calls as thread `thread` makes them: distinct latencies, every third an error.
    fn calls(thread: u64, calls: u64) -> impl Iterator<Item = (Status, u64)> {
        (0..calls).map(move |i| {
            let status = if i.is_multiple_of(3) {
                Status::Error
            } else {
                Status::Success
            };
            (status, thread * 1_000_000 + i)
        })
    }

    fn seconds_of(calls: impl Iterator<Item = (Status, u64)>) -> Vec<f64> {
        let mut all: Vec<f64> = calls.map(|(_, nanos)| seconds(nanos)).collect();
        all.sort_by(f64::total_cmp);
        all
    }

    #[test]
    fn a_call_is_decoded_as_encoded() {
        for status in Status::ALL {
            for nanos in [0, 1, 12_345, u64::MAX >> STATUS_BITS] {
                assert_eq!(decode(encode(status, nanos)), (status, nanos));
            }
        }
        assert_eq!(
            decode(encode(Status::Error, u64::MAX)),
            (Status::Error, u64::MAX >> STATUS_BITS),
            "saturated, 73 years"
        );
    }

    #[test]
    fn a_full_ring_refuses_until_handed_over() {
        let pending = Pending::default();
        let call = encode(Status::Success, 100);
        for i in 0..RING as u64 {
            assert_eq!(pending.push(call), Some(i + 1));
        }
        assert_eq!(pending.push(call), None);
        let (batcher, _) = batcher();
        batcher.hand_over(&pending);
        assert_eq!(pending.push(call), Some(1));
    }

    /// Two threads that have exited and the one still running: after a flush the recorder
    /// has every latency exactly once and every status's count.
    #[test]
    fn every_call_reaches_the_recorder_exactly_once_after_a_flush() {
        let (batcher, received) = batcher();
        std::thread::scope(|s| {
            for thread in 1..=2 {
                let batcher = &batcher;
                s.spawn(move || {
                    for (status, nanos) in calls(thread, 1000) {
                        batcher.record(status, nanos);
                    }
                });
            }
        });
        for (status, nanos) in calls(3, 100) {
            batcher.record(status, nanos);
        }
        batcher.flush();
        let all = || calls(1, 1000).chain(calls(2, 1000)).chain(calls(3, 100));
        assert_eq!(received.latencies(), seconds_of(all()));
        let errors = all().filter(|(status, _)| *status == Status::Error).count() as u64;
        assert_eq!(received.outcomes(), [2100 - errors, errors, 0, 0, 0]);
        batcher.flush();
        assert_eq!(received.latencies().len(), 2100, "handed over once");
    }

    /// A recorder that panics on one latency: that call is counted, not handed over twice;
    /// nothing is poisoned, and no other call, of this thread or another, is lost.
    #[test]
    fn a_panicking_recorder_loses_only_the_call_it_panicked_on() {
        let (batcher, received) = batcher();
        // This thread's stripe first: claimed after the other thread exits, it could be that
        // thread's, with its calls still queued, and the hand-over would come early.
        assert!(
            batcher.pending.mine().is_some(),
            "this thread queues its calls"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                for (status, nanos) in calls(1, 100) {
                    batcher.record(status, nanos);
                }
            });
        });
        let explosive = seconds(2_000_050);
        *received.on.lock() = Some((explosive, Box::new(|| panic!("recorder failed"))));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (status, nanos) in calls(2, BATCH) {
                batcher.record(status, nanos);
            }
        }));
        assert!(
            panicked.is_err(),
            "the panic reached the call that handed over"
        );
        for (status, nanos) in calls(3, 10) {
            batcher.record(status, nanos);
        }
        batcher.flush();
        let expected = calls(1, 100)
            .chain(calls(2, BATCH))
            .chain(calls(3, 10))
            .filter(|&(_, nanos)| seconds(nanos) != explosive);
        assert_eq!(received.latencies(), seconds_of(expected));
        assert_eq!(received.outcomes().iter().sum::<u64>(), 100 + BATCH + 10);
    }

    /// The recorder calls back into the batcher while a hand-over holds it: monitored calls
    /// made there queue or go straight to the recorder, a flush there returns, and every call
    /// arrives.
    #[test]
    fn calls_and_flushes_from_inside_the_recorder_neither_wait_nor_panic() {
        let (batcher, received) = batcher();
        let inner: Arc<OnceLock<Weak<Batcher>>> = Arc::default();
        inner.set(Arc::downgrade(&batcher)).expect("set once");
        let from_inside = Arc::clone(&inner);
        *received.on.lock() = Some((
            seconds(5),
            Box::new(move || {
                let batcher = from_inside.get().and_then(Weak::upgrade).expect("alive");
                // More than the ring holds, so that some are recorded directly.
                for _ in 0..300 {
                    batcher.record(Status::Success, 7);
                }
                batcher.flush();
            }),
        ));
        for nanos in 0..BATCH {
            batcher.record(Status::Success, nanos);
        }
        batcher.flush();
        assert_eq!(received.latencies().len() as u64, BATCH + 300);
        assert_eq!(received.outcomes()[Status::Success as usize], BATCH + 300);
    }

    /// A call recorded by a thread-local's destructor, as its thread exits, is not lost (and
    /// does not panic), whether the thread's stripe is still leased or already returned.
    #[test]
    fn a_call_from_a_destructor_at_thread_exit_arrives() {
        struct RecordsOnDrop(Arc<Batcher>);
        impl Drop for RecordsOnDrop {
            fn drop(&mut self) {
                self.0.record(Status::Cancelled, 42);
            }
        }
        thread_local! {
            static GUARD: std::cell::RefCell<Option<RecordsOnDrop>> = const { std::cell::RefCell::new(None) };
        }
        let (batcher, received) = batcher();
        let owned = Arc::clone(&batcher);
        std::thread::spawn(move || {
            GUARD.with(|guard| *guard.borrow_mut() = Some(RecordsOnDrop(owned)));
        })
        .join()
        .expect("no panic at thread exit");
        batcher.flush();
        assert_eq!(received.latencies(), [seconds(42)]);
        assert_eq!(received.outcomes()[Status::Cancelled as usize], 1);
    }

    /// Dropping the batcher (its monitor dropped) hands over what is left.
    #[test]
    fn a_dropped_batcher_hands_over_what_is_left() {
        let (batcher, received) = batcher();
        for (status, nanos) in calls(1, 5) {
            batcher.record(status, nanos);
        }
        assert!(received.latencies().is_empty());
        drop(batcher);
        assert_eq!(received.latencies(), seconds_of(calls(1, 5)));
    }
}
