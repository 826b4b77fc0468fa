//! A circuit breaker: after repeated failures, stop asking a dead Redis and let one probe
//! decide when it is back.

use std::{
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;
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
    opened_at: Mutex<Option<Instant>>,
}

/// What a state change means, for logging by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

impl Breaker {
    pub(crate) fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            state: AtomicU8::new(BreakerState::Closed as u8),
            consecutive_failures: AtomicU32::new(0),
            openings: AtomicU64::new(0),
            opened_at: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn openings(&self) -> u64 {
        self.openings.load(Ordering::Relaxed)
    }

    /// Whether a call may go to Redis now. After the cool-down, exactly one caller gets
    /// through as the probe.
    pub(crate) fn allow(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open => {
                let cooled = self
                    .opened_at
                    .lock()
                    .is_none_or(|at| at.elapsed() >= self.cool_down);
                cooled
                    && self
                        .state
                        .compare_exchange(
                            BreakerState::Open as u8,
                            BreakerState::HalfOpen as u8,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
            }
        }
    }

    pub(crate) fn on_success(&self) -> Transition {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let previous = self
            .state
            .swap(BreakerState::Closed as u8, Ordering::AcqRel);
        if previous == BreakerState::Closed as u8 {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    pub(crate) fn on_failure(&self) -> Transition {
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
            *self.opened_at.lock() = Some(Instant::now());
            self.openings.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let breaker = Breaker::new(3, COOL_DOWN);
        assert_eq!(breaker.on_failure(), Transition::None);
        assert_eq!(
            breaker.on_success(),
            Transition::None,
            "a success resets the count"
        );
        assert_eq!(breaker.on_failure(), Transition::None);
        assert_eq!(breaker.on_failure(), Transition::None);
        assert_eq!(breaker.on_failure(), Transition::Opened);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.openings(), 1);
        assert!(!breaker.allow(), "open: calls fail at once");

        tokio::time::advance(COOL_DOWN).await;
        assert!(
            breaker.allow(),
            "the first caller after the cool-down is the probe"
        );
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(!breaker.allow(), "only one probe at a time");

        assert_eq!(
            breaker.on_failure(),
            Transition::Opened,
            "a failed probe reopens"
        );
        assert_eq!(breaker.openings(), 2);
        tokio::time::advance(COOL_DOWN).await;
        assert!(breaker.allow());
        assert_eq!(
            breaker.on_success(),
            Transition::Closed,
            "a good probe closes"
        );
        assert!(breaker.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn forced_open_waits_for_the_cool_down_too() {
        let breaker = Breaker::new(3, COOL_DOWN);
        assert_eq!(breaker.force_open(), Transition::Opened);
        assert!(!breaker.allow());
        tokio::time::advance(COOL_DOWN).await;
        assert!(breaker.allow());
    }
}
