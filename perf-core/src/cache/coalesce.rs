//! Coalescing of concurrent loads: one loader per key per process, everyone gets its value.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::l1::AnyValue;

#[derive(Clone)]
pub(crate) enum FlightState {
    Loading,
    Loaded(AnyValue),
    /// The leader's loader returned an error, which belongs to the leader alone.
    Failed,
}

type Flight = Arc<watch::Sender<FlightState>>;

/// The keys being loaded right now.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Box<str>, Flight>>,
}

/// What a caller is to do about a key that missed.
pub(crate) enum Role<'a> {
    /// Run the loader and report through the guard.
    Leader(LeaderGuard<'a>),
    /// Wait for the leader.
    Waiter(watch::Receiver<FlightState>),
}

/// What a waiter learnt.
pub(crate) enum Outcome {
    Loaded(AnyValue),
    Failed,
    /// The leader was dropped (cancelled or panicked) before it finished: try again.
    Abandoned,
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(key) {
            return Role::Waiter(flight.subscribe());
        }
        let flight = Arc::new(watch::Sender::new(FlightState::Loading));
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
}

pub(crate) async fn wait(mut receiver: watch::Receiver<FlightState>) -> Outcome {
    match receiver
        .wait_for(|state| !matches!(state, FlightState::Loading))
        .await
    {
        Ok(state) => match &*state {
            FlightState::Loaded(value) => Outcome::Loaded(Arc::clone(value)),
            FlightState::Failed | FlightState::Loading => Outcome::Failed,
        },
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
        self.flight.send_replace(state);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}
