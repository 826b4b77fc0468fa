//! Coalescing of concurrent loads: one loader per key per process, everyone gets its value.

use std::{collections::HashMap, sync::Arc};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::l1::AnyValue;

#[derive(Clone)]
pub(crate) enum FlightState {
    Loading,
    Loaded(AnyValue),
    /// The leader's loader returned an error, which belongs to the leader alone.
    Failed,
    /// The leader was dropped (cancelled or panicked) before it finished.
    Abandoned,
}

struct FlightInner {
    state: watch::Sender<FlightState>,
    /// Led by synchronous code, which a blocked thread can wait for.
    blocking: bool,
}

type Flight = Arc<FlightInner>;

/// The keys being loaded right now.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Box<str>, Flight>>,
    /// Notified whenever a flight ends, for callers blocked in [`Flights::wait_blocking`].
    ended: Condvar,
}

/// Who joins a flight: async callers wait by awaiting, synchronous ones by blocking.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    Async,
    Blocking,
}

/// What a caller is to do about a key that missed.
pub(crate) enum Role<'a> {
    /// Run the loader and report through the guard.
    Leader(LeaderGuard<'a>),
    /// Wait for the leader.
    Waiter(watch::Receiver<FlightState>),
    /// A blocking caller meeting an async leader: blocking this thread could stall the
    /// leader's runtime, so it loads for itself.
    Alone,
}

/// What a waiter learnt.
pub(crate) enum Outcome {
    Loaded(AnyValue),
    Failed,
    /// The leader was dropped (cancelled or panicked) before it finished: try again.
    Abandoned,
}

impl Flights {
    pub(crate) fn join(&self, key: &str, caller: Caller) -> Role<'_> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(key) {
            if caller == Caller::Blocking && !flight.blocking {
                return Role::Alone;
            }
            return Role::Waiter(flight.state.subscribe());
        }
        let flight = Arc::new(FlightInner {
            state: watch::Sender::new(FlightState::Loading),
            blocking: caller == Caller::Blocking,
        });
        map.insert(key.into(), Arc::clone(&flight));
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.into(),
            flight,
        })
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.map.lock().len() as u64
    }

    /// [`wait`] for synchronous callers: blocks this thread until the leader finishes.
    pub(crate) fn wait_blocking(&self, receiver: watch::Receiver<FlightState>) -> Outcome {
        let mut map = self.map.lock();
        loop {
            // Checked under the map's lock, which a leader takes before notifying: no wake-up
            // is lost between this check and the wait.
            if let Some(outcome) = settled(&receiver) {
                return outcome;
            }
            self.ended.wait(&mut map);
        }
    }
}

/// The flight's outcome, if it has one yet.
fn settled(receiver: &watch::Receiver<FlightState>) -> Option<Outcome> {
    outcome_of(&receiver.borrow())
}

fn outcome_of(state: &FlightState) -> Option<Outcome> {
    match state {
        FlightState::Loading => None,
        FlightState::Loaded(value) => Some(Outcome::Loaded(Arc::clone(value))),
        FlightState::Failed => Some(Outcome::Failed),
        FlightState::Abandoned => Some(Outcome::Abandoned),
    }
}

pub(crate) async fn wait(mut receiver: watch::Receiver<FlightState>) -> Outcome {
    match receiver
        .wait_for(|state| !matches!(state, FlightState::Loading))
        .await
    {
        Ok(state) => outcome_of(&state).unwrap_or(Outcome::Abandoned),
        Err(_) => Outcome::Abandoned,
    }
}

/// Held by the caller running the loader. Dropping it unfinished (cancellation, panic) releases
/// the waiters, who then try again.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: Box<str>,
    flight: Flight,
}

impl LeaderGuard<'_> {
    pub(crate) fn finish(self, state: FlightState) {
        self.flight.state.send_replace(state);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.flight.state.send_if_modified(|state| {
            let unfinished = matches!(state, FlightState::Loading);
            if unfinished {
                *state = FlightState::Abandoned;
            }
            unfinished
        });
        let mut map = self.flights.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
        drop(map);
        if self.flight.blocking {
            self.flights.ended.notify_all();
        }
    }
}
