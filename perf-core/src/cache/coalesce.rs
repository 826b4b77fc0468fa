//! Coalescing of concurrent loads: one loader per key per process, and everyone waiting gets
//! its outcome, a failure included.
//!
//! A flight is the one load of a key in progress. Its leader runs the loader (or hands it to a
//! background task that holds the [`LeaderGuard`]); everyone else subscribes to its state. A
//! guard dropped before it reported (a cancelled caller, a panic, an abandoned load) tells the
//! waiters, who then try again. With a failure TTL, a failed flight stays in the map until
//! then, and new callers receive its failure without running a loader.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;

use super::entry::AnyValue;
use crate::{
    SharedFailure,
    sync::{Condvar, Mutex},
};

#[derive(Clone)]
pub(crate) enum FlightState {
    Loading,
    Loaded(AnyValue),
    /// The loader returned an error; kept for new callers until the instant, if any.
    Failed(SharedFailure, Option<quanta::Instant>),
    /// The load passed its hard timeout and was given up.
    TimedOut(Duration),
    /// The leader was dropped (cancelled or panicked) before it finished.
    Abandoned,
}

struct FlightInner {
    state: watch::Sender<FlightState>,
    /// Led by synchronous code, which a blocked thread can wait for.
    blocking: bool,
}

type Flight = Arc<FlightInner>;

#[derive(Default)]
struct Shared {
    map: Mutex<HashMap<Box<str>, Flight>>,
    /// Notified whenever a flight ends, for callers blocked in [`Flights::wait_blocking`].
    ended: Condvar,
}

/// The keys being loaded right now, and recent failures kept for `failure_ttl`.
#[derive(Default)]
pub(crate) struct Flights {
    shared: Arc<Shared>,
}

/// Who joins a flight: async callers wait by awaiting, synchronous ones by blocking.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    Async,
    Blocking,
}

/// What a caller is to do about a key that missed.
pub(crate) enum Role {
    /// Run the loader and report through the guard.
    Leader(LeaderGuard),
    /// Wait for the leader.
    Waiter(watch::Receiver<FlightState>),
    /// A blocking caller meeting an async leader: blocking this thread could stall the
    /// leader's runtime, so it loads for itself.
    Alone,
    /// A load of this key failed within its failure TTL: this is its failure.
    Failed(SharedFailure),
}

/// What a waiter learnt.
pub(crate) enum Outcome {
    Loaded(AnyValue),
    Failed(SharedFailure),
    TimedOut(Duration),
    /// The leader was dropped (cancelled or panicked) before it finished: try again.
    Abandoned,
}

impl Flights {
    /// Joins the load of `key`; `is_ours` tells whether a kept failure is of this caller's
    /// kind of loader (else the caller loads for itself).
    pub(crate) fn join(
        &self,
        key: &str,
        caller: Caller,
        now: quanta::Instant,
        is_ours: impl Fn(&SharedFailure) -> bool,
    ) -> Role {
        let mut map = self.shared.map.lock();
        if let Some(flight) = map.get(key) {
            match &*flight.state.borrow() {
                FlightState::Loading if caller == Caller::Blocking && !flight.blocking => {
                    return Role::Alone;
                }
                FlightState::Loading => return Role::Waiter(flight.state.subscribe()),
                FlightState::Failed(failure, Some(until)) if *until > now && is_ours(failure) => {
                    return Role::Failed(failure.clone());
                }
                // A failure kept past its TTL: replaced below.
                _ => {}
            }
        }
        let flight = Arc::new(FlightInner {
            state: watch::Sender::new(FlightState::Loading),
            blocking: caller == Caller::Blocking,
        });
        map.insert(key.into(), Arc::clone(&flight));
        Role::Leader(LeaderGuard {
            shared: Arc::clone(&self.shared),
            key: key.into(),
            flight,
            kept: false,
        })
    }

    /// Keys being loaded right now.
    pub(crate) fn in_flight(&self) -> u64 {
        let map = self.shared.map.lock();
        map.values()
            .filter(|f| matches!(*f.state.borrow(), FlightState::Loading))
            .count() as u64
    }

    /// Callers waiting on the flight of `key`, for tests that start a race only once every
    /// caller has joined.
    #[cfg(test)]
    pub(crate) fn waiters(&self, key: &str) -> usize {
        let map = self.shared.map.lock();
        map.get(key)
            .map_or(0, |flight| flight.state.receiver_count())
    }

    /// Forgets failures kept past their TTL.
    pub(crate) fn sweep(&self, now: quanta::Instant) {
        self.shared.map.lock().retain(|_, flight| {
            !matches!(&*flight.state.borrow(), FlightState::Failed(_, Some(until)) if *until <= now)
        });
    }

    /// Waits for the leader by blocking this thread.
    pub(crate) fn wait_blocking(&self, receiver: watch::Receiver<FlightState>) -> Outcome {
        let mut map = self.shared.map.lock();
        loop {
            // Checked under the map's lock, which a leader takes before notifying: no wake-up
            // is lost between this check and the wait.
            if let Some(outcome) = outcome_of(&receiver.borrow()) {
                return outcome;
            }
            self.shared.ended.wait(&mut map);
        }
    }
}

fn outcome_of(state: &FlightState) -> Option<Outcome> {
    match state {
        FlightState::Loading => None,
        FlightState::Loaded(value) => Some(Outcome::Loaded(Arc::clone(value))),
        FlightState::Failed(failure, _) => Some(Outcome::Failed(failure.clone())),
        FlightState::TimedOut(after) => Some(Outcome::TimedOut(*after)),
        FlightState::Abandoned => Some(Outcome::Abandoned),
    }
}

/// The flight's outcome, or `None` if `deadline` came first.
pub(crate) async fn wait(
    mut receiver: watch::Receiver<FlightState>,
    deadline: Option<tokio::time::Instant>,
) -> Option<Outcome> {
    let settled = receiver.wait_for(|state| !matches!(state, FlightState::Loading));
    let state = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, settled).await.ok()?,
        None => settled.await,
    };
    Some(match state {
        Ok(state) => outcome_of(&state).unwrap_or(Outcome::Abandoned),
        Err(_) => Outcome::Abandoned,
    })
}

/// Held by whoever runs the loader. Dropping it unfinished (cancellation, panic, a load given
/// up) releases the waiters, who then try again.
pub(crate) struct LeaderGuard {
    shared: Arc<Shared>,
    key: Box<str>,
    flight: Flight,
    /// The flight stays in the map after it ended (a failure kept for its TTL).
    kept: bool,
}

impl LeaderGuard {
    /// The flight's state, for the leader's own wait (a load run in the background).
    pub(crate) fn subscribe(&self) -> watch::Receiver<FlightState> {
        self.flight.state.subscribe()
    }

    pub(crate) fn finish(mut self, state: FlightState) {
        self.kept = matches!(state, FlightState::Failed(_, Some(_)));
        self.flight.state.send_replace(state);
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.flight.state.send_if_modified(|state| {
            let unfinished = matches!(state, FlightState::Loading);
            if unfinished {
                *state = FlightState::Abandoned;
            }
            unfinished
        });
        let mut map = self.shared.map.lock();
        if !self.kept
            && map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        if self.flight.blocking {
            self.shared.ended.notify_all();
        }
    }
}

/// Model checks of the blocking wait: run with `RUSTFLAGS="--cfg shuttle" cargo test -p
/// perf-core --lib model`, which explores thread interleavings at every lock, wait and notify.
#[cfg(all(test, shuttle))]
mod model {
    use std::sync::Arc;

    use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    const ITERATIONS: usize = 2000;

    /// Three blocking callers of one key; the first leader is dropped unfinished (a panicking
    /// loader), the next one loads. Everyone ends with the value: a waiter of the dropped
    /// leader tries again, and none waits for ever (shuttle fails a run whose threads all
    /// block).
    #[test]
    fn every_blocking_caller_gets_the_value_even_when_a_leader_is_dropped() {
        shuttle::check_random(
            || {
                let flights = Arc::new(Flights::default());
                let abandoned = Arc::new(AtomicBool::new(false));
                let loads = Arc::new(AtomicUsize::new(0));
                let (clock, _) = quanta::Clock::mock();
                let callers: Vec<_> = (0..3)
                    .map(|_| {
                        let (flights, abandoned, loads, clock) = (
                            Arc::clone(&flights),
                            Arc::clone(&abandoned),
                            Arc::clone(&loads),
                            clock.clone(),
                        );
                        shuttle::thread::spawn(move || {
                            loop {
                                match flights.join("k", Caller::Blocking, clock.now(), |_| true) {
                                    Role::Leader(guard) => {
                                        if abandoned.swap(true, Ordering::SeqCst) {
                                            loads.fetch_add(1, Ordering::SeqCst);
                                            let value: AnyValue = Arc::new(7u64);
                                            guard.finish(FlightState::Loaded(value));
                                            return 7;
                                        }
                                        drop(guard);
                                    }
                                    Role::Waiter(receiver) => {
                                        match flights.wait_blocking(receiver) {
                                            Outcome::Loaded(value) => {
                                                return *value
                                                    .downcast_ref::<u64>()
                                                    .expect("a u64");
                                            }
                                            Outcome::Abandoned => {}
                                            _ => panic!("nothing failed or timed out"),
                                        }
                                    }
                                    Role::Alone | Role::Failed(_) => {
                                        panic!("blocking callers of a blocking flight wait")
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for caller in callers {
                    assert_eq!(caller.join().expect("no panic"), 7);
                }
                assert!(loads.load(Ordering::SeqCst) >= 1);
                assert_eq!(flights.in_flight(), 0, "no flight left behind");
            },
            ITERATIONS,
        );
    }
}
