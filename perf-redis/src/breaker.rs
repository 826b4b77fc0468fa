//! A circuit breaker: after repeated failures, stop asking a dead Redis and let one probe
//! decide when it is back.
//!
//! Every call that goes through holds a [`Permit`], which settles the call when it ends. A call
//! dropped by its caller (a client hung up, a `timeout` around it fired) is settled by the
//! permit's `Drop`: a dropped probe frees the probe slot at once, and a dropped call that had
//! waited at least half the operation timeout counts as a failure, so that a frozen Redis
//! opens the breaker even when callers give up before the timeout. A call dropped sooner says
//! nothing about Redis and is not counted. A probe that never settles (its future neither
//! polled nor dropped) is replaced after a cool-down. The state gauge follows every change.

use std::{
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;
use perf_core::metrics::{CACHE_BREAKER_OPENINGS_TOTAL, CACHE_BREAKER_STATE};
use serde::Serialize;
use tokio::time::Instant;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// One probe call is deciding whether Redis is back.
    HalfOpen = 1,
    /// Calls fail at once until the cool-down ends.
    Open = 2,
}

impl BreakerState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Closed,
            1 => Self::HalfOpen,
            _ => Self::Open,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    failure_threshold: u32,
    cool_down: Duration,
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    openings: AtomicU64,
    /// When the breaker last opened, or, while half-open, when the probe started.
    since: Mutex<Option<Instant>>,
    /// Names the breaker in its log lines.
    name: String,
}

/// A call's right to go to Redis; settle it with [`succeeded`](Permit::succeeded) or
/// [`failed`](Permit::failed), or drop it (see the module documentation).
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    started: Instant,
    /// A call dropped after waiting this long counts as a failure.
    slow_after: Duration,
    settled: bool,
}

impl Permit<'_> {
    pub(crate) fn succeeded(mut self) -> Transition {
        self.settled = true;
        self.breaker.on_success()
    }

    pub(crate) fn failed(mut self) -> Transition {
        self.settled = true;
        self.breaker.on_failure()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.started.elapsed() >= self.slow_after {
            self.breaker.on_failure();
        } else if self.probe {
            self.breaker.release_probe();
        }
    }
}

/// What a state change means, for logging by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

impl Breaker {
    /// A closed breaker, exported as such: the state gauge and the openings counter exist
    /// from the start, so that a healthy Redis charts as closed rather than as no data.
    pub(crate) fn new(failure_threshold: u32, cool_down: Duration, name: &str) -> Self {
        let breaker = Self {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            state: AtomicU8::new(BreakerState::Closed as u8),
            consecutive_failures: AtomicU32::new(0),
            openings: AtomicU64::new(0),
            since: Mutex::new(None),
            name: name.to_owned(),
        };
        breaker.publish_state();
        metrics::counter!(perf_core::metrics::name(CACHE_BREAKER_OPENINGS_TOTAL)).increment(0);
        breaker
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn openings(&self) -> u64 {
        self.openings.load(Ordering::Relaxed)
    }

    /// A permit for a call to Redis now, or `None` while the breaker is open. After the
    /// cool-down, exactly one caller gets through as the probe. `slow_after`: see [`Permit`].
    pub(crate) fn permit(&self, slow_after: Duration) -> Option<Permit<'_>> {
        let probe = match self.state() {
            BreakerState::Closed => false,
            BreakerState::HalfOpen | BreakerState::Open => {
                if !self.take_probe() {
                    return None;
                }
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
            started: Instant::now(),
            slow_after,
            settled: false,
        })
    }

    /// Becomes the probe: the cool-down has passed since the breaker opened, or the last probe
    /// has been out that long without settling.
    fn take_probe(&self) -> bool {
        let mut since = self.since.lock();
        if since.is_some_and(|at| at.elapsed() < self.cool_down) {
            return false;
        }
        let state = self.state();
        if state == BreakerState::Closed {
            return false;
        }
        *since = Some(Instant::now());
        self.state
            .store(BreakerState::HalfOpen as u8, Ordering::Release);
        drop(since);
        if state == BreakerState::HalfOpen {
            tracing::warn!(breaker = %self.name, "a Redis probe did not settle; probing again");
        }
        self.publish_state();
        true
    }

    /// A probe dropped unfinished: the next caller probes at once.
    fn release_probe(&self) {
        let mut since = self.since.lock();
        if self
            .state
            .compare_exchange(
                BreakerState::HalfOpen as u8,
                BreakerState::Open as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            *since = Instant::now().checked_sub(self.cool_down);
            drop(since);
            self.publish_state();
        }
    }

    fn publish_state(&self) {
        metrics::gauge!(perf_core::metrics::name(CACHE_BREAKER_STATE))
            .set(f64::from(self.state() as u8));
    }

    fn on_success(&self) -> Transition {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let previous = self
            .state
            .swap(BreakerState::Closed as u8, Ordering::AcqRel);
        if previous == BreakerState::Closed as u8 {
            return Transition::None;
        }
        self.publish_state();
        tracing::info!(breaker = %self.name, "Redis circuit breaker closed");
        Transition::Closed
    }

    fn on_failure(&self) -> Transition {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let state = self.state();
        let trips = state == BreakerState::HalfOpen
            || (state == BreakerState::Closed && failures >= self.failure_threshold);
        if trips && self.open_from(state) {
            Transition::Opened
        } else {
            Transition::None
        }
    }

    /// Opens the breaker without a failed call: Redis was unreachable at start.
    pub(crate) fn force_open(&self) -> Transition {
        if self.open_from(BreakerState::Closed) {
            Transition::Opened
        } else {
            Transition::None
        }
    }

    fn open_from(&self, from: BreakerState) -> bool {
        let opened = self
            .state
            .compare_exchange(
                from as u8,
                BreakerState::Open as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if opened {
            *self.since.lock() = Some(Instant::now());
            self.openings.fetch_add(1, Ordering::Relaxed);
            self.publish_state();
            metrics::counter!(perf_core::metrics::name(CACHE_BREAKER_OPENINGS_TOTAL)).increment(1);
            tracing::warn!(breaker = %self.name, "Redis circuit breaker opened");
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(5);
    const SLOW: Duration = Duration::from_millis(100);

    fn breaker() -> Breaker {
        Breaker::new(3, COOL_DOWN, "test")
    }

    fn fail(breaker: &Breaker) -> Transition {
        breaker.permit(SLOW).expect("allowed").failed()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let breaker = breaker();
        assert_eq!(fail(&breaker), Transition::None);
        assert_eq!(
            breaker.permit(SLOW).expect("allowed").succeeded(),
            Transition::None,
            "a success resets the count"
        );
        assert_eq!(fail(&breaker), Transition::None);
        assert_eq!(fail(&breaker), Transition::None);
        assert_eq!(fail(&breaker), Transition::Opened);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.openings(), 1);
        assert!(breaker.permit(SLOW).is_none(), "open: calls fail at once");

        tokio::time::advance(COOL_DOWN).await;
        let probe = breaker
            .permit(SLOW)
            .expect("the first caller after the cool-down probes");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.permit(SLOW).is_none(), "only one probe at a time");
        assert_eq!(probe.failed(), Transition::Opened, "a failed probe reopens");
        assert_eq!(breaker.openings(), 2);

        tokio::time::advance(COOL_DOWN).await;
        let probe = breaker.permit(SLOW).expect("probe");
        assert_eq!(probe.succeeded(), Transition::Closed, "a good probe closes");
        assert!(breaker.permit(SLOW).is_some());
    }

    #[test]
    fn a_new_breaker_exports_closed_and_no_openings() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || drop(breaker()));
        let mut exported: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        exported.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            exported,
            vec![
                (
                    CACHE_BREAKER_OPENINGS_TOTAL.to_owned(),
                    DebugValue::Counter(0)
                ),
                (
                    CACHE_BREAKER_STATE.to_owned(),
                    DebugValue::Gauge(0.0.into())
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_the_slot_at_once() {
        let breaker = breaker();
        assert_eq!(breaker.force_open(), Transition::Opened);
        tokio::time::advance(COOL_DOWN).await;
        let probe = breaker.permit(SLOW).expect("probe");
        drop(probe); // its caller hung up before Redis answered
        assert_eq!(breaker.state(), BreakerState::Open);
        let next = breaker
            .permit(SLOW)
            .expect("the next caller probes without a cool-down");
        assert_eq!(next.succeeded(), Transition::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_dropped_after_waiting_long_count_as_failures() {
        let breaker = breaker();
        for _ in 0..10 {
            drop(breaker.permit(SLOW).expect("allowed"));
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "calls dropped at once say nothing about Redis"
        );
        for _ in 0..3 {
            let permit = breaker.permit(SLOW).expect("allowed");
            tokio::time::advance(SLOW).await;
            drop(permit); // a frozen Redis: the caller gave up first
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_settles_is_replaced_after_a_cool_down() {
        let breaker = breaker();
        breaker.force_open();
        tokio::time::advance(COOL_DOWN).await;
        std::mem::forget(breaker.permit(SLOW).expect("probe"));
        assert!(breaker.permit(SLOW).is_none());
        tokio::time::advance(COOL_DOWN).await;
        let probe = breaker.permit(SLOW).expect("a new probe");
        assert_eq!(probe.succeeded(), Transition::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn forced_open_waits_for_the_cool_down_too() {
        let breaker = breaker();
        assert_eq!(breaker.force_open(), Transition::Opened);
        assert!(breaker.permit(SLOW).is_none());
        tokio::time::advance(COOL_DOWN).await;
        assert!(breaker.permit(SLOW).is_some());
    }
}
