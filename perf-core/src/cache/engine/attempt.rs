//! One caller's load, from what the tiers hold to its answer: the loaded value, a stale value
//! (after a failure, a timeout, or a soft timeout while the load goes on), or the failure,
//! shared. This file runs loads in the caller's future (`background.rs` in a task) and
//! synchronously.

use std::{future::Future, sync::Arc, time::Duration};

use super::{Engine, WritePlan, target::Target};
use crate::cache::{
    CacheValue,
    coalesce::{self, FlightState, LeaderGuard, Outcome, Role},
    entry::{Found, Lookup},
    options::{ErrorSharing, Freshness, LoadOptions, Loaded, LoaderError},
    stamp::Age,
    stats::LoadEvent,
};
use crate::{Error, SharedFailure};

impl Engine {
    pub(super) async fn load_inline<T, E, F, Fut, G>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Target<T>,
    {
        let mut attempt = match self.begin(key, options, target).await {
            Begin::Done(result) => return result,
            Begin::Outside(refused) => return self.load_outside(key, refused, loader).await,
            Begin::Refresh(current, plan) => {
                return Ok(self
                    .refresh_inline(key, current, plan, sharing, loader, target)
                    .await);
            }
            Begin::Load(attempt) => attempt,
        };
        loop {
            match self.join::<E>(key) {
                Role::Leader(guard) => {
                    let guard = match self.stored_meanwhile(key, &attempt, guard) {
                        Ok(done) => return Ok(done),
                        Err(guard) => guard,
                    };
                    return self
                        .lead_inline(guard, &mut attempt, sharing, loader, target)
                        .await;
                }
                Role::Waiter(receiver) => {
                    if let Some(done) = self.follow(receiver, &mut attempt, sharing, target).await {
                        return done;
                    }
                }
                Role::Failed(failure) => return self.failed(&attempt, failure, sharing, target),
                // Only blocking callers are left alone.
                Role::Alone => {}
            }
        }
    }

    /// The loader's value, not cached: the cache is off, or refused the key or TTL.
    pub(super) async fn load_outside<T, E, F, Fut>(
        &self,
        key: &str,
        refused: Option<Error>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let loaded = match refused {
            None => self.run_loader(key, loader).await.map(Arc::new),
            Some(error) => self.load_uncached(key, error, loader).await,
        };
        loaded.map(Loaded::fresh)
    }

    pub(super) fn join<E: 'static>(&self, key: &str) -> Role {
        let now = self.clock.now();
        self.flights.join(
            key,
            coalesce::Caller::Async,
            now,
            SharedFailure::is_for::<E>,
        )
    }

    /// Settings, the write plan, and what the tiers hold.
    pub(super) async fn begin<'k, T, E, G>(
        &self,
        key: &'k str,
        options: &LoadOptions,
        target: G,
    ) -> Begin<'k, T, E>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        let policy = match options.resolve(&self.defaults()) {
            Ok(policy) => policy,
            Err(error) => return Begin::Done(Err(E::from(error))),
        };
        let plan = match self.plan_with(key, policy) {
            Ok(plan) => plan,
            Err(error) => return Begin::Outside(Some(error)),
        };
        if !self.is_enabled() {
            return Begin::Outside(None);
        }
        let mut found = target.find_local(self, key);
        if found.is_none() {
            found = target.find_remote(self, key).await;
        }
        let stale = match found {
            Some(found) => match found.age {
                Age::Fresh => return Begin::Done(Ok(Loaded::fresh(found.value))),
                Age::RefreshDue => return Begin::Refresh(found, plan),
                // Kept only where fail-safe wrote it; served only where this call allows it.
                Age::Stale => policy.fail_safe.is_some().then_some(found),
            },
            None => None,
        };
        Begin::Load(Attempt { key, plan, stale })
    }

    /// A leader that finished between our miss and our join has stored its value: ours too
    /// (or, after a load given up at a timeout, the re-armed stale value).
    pub(super) fn stored_meanwhile<T: CacheValue>(
        &self,
        key: &str,
        attempt: &Attempt<'_, T>,
        guard: LeaderGuard,
    ) -> Result<Loaded<T>, LeaderGuard> {
        let found = match self.l1.find::<T>(key, &self.clock, &self.counters) {
            Lookup::Hit(found) if found.age == Age::Fresh => found,
            _ => return Err(guard),
        };
        guard.finish(FlightState::Loaded(found.value.clone()));
        let rearmed = attempt
            .stale
            .as_ref()
            .is_some_and(|stale| Arc::ptr_eq(&stale.value, &found.value));
        Ok(Loaded {
            value: found.value,
            freshness: if rearmed {
                Freshness::Stale
            } else {
                Freshness::Fresh
            },
        })
    }

    /// Runs the loader in this caller's future, until it ends or this caller stops waiting.
    pub(super) async fn lead_inline<T, E, F, Fut, G>(
        &self,
        guard: LeaderGuard,
        attempt: &mut Attempt<'_, T>,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Target<T>,
    {
        let (plan, attempt_key) = (attempt.plan, attempt.key);
        let load = async {
            let loaded = self.run_loader(attempt_key, loader).await.map(Arc::new);
            if let Ok(value) = &loaded {
                target
                    .store(self, attempt_key, Arc::clone(value), &plan)
                    .await;
            }
            loaded
        };
        let (deadline, timeout) = attempt.deadline();
        let loaded = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, load).await.ok(),
            None => Some(load.await),
        };
        match loaded {
            Some(Ok(value)) => {
                guard.finish(FlightState::Loaded(value.clone()));
                Ok(Loaded::fresh(value))
            }
            Some(Err(error)) => {
                let failure = self.share_failure(&error, sharing);
                guard.finish(FlightState::Failed(
                    failure,
                    self.failure_kept_until(&attempt.plan),
                ));
                match self.fall_back(attempt, target, Fallback::Failure) {
                    Some(stale) => Ok(stale),
                    None => Err(error),
                }
            }
            // The load is dropped here: waiters learn that it timed out (or, with a stale
            // value re-armed, find that value when they try again).
            None => self.timed_out(attempt, timeout, Some(guard), target),
        }
    }

    /// Waits for another caller's load.
    pub(super) async fn follow<T, E, G>(
        &self,
        receiver: tokio::sync::watch::Receiver<FlightState>,
        attempt: &mut Attempt<'_, T>,
        sharing: ErrorSharing<E>,
        target: G,
    ) -> Option<Result<Loaded<T>, E>>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        let (deadline, timeout) = attempt.deadline();
        let Some(outcome) = coalesce::wait(receiver, deadline).await else {
            return Some(self.timed_out(attempt, timeout, None, target));
        };
        self.settle(outcome, attempt, Caller::Waiter, sharing, target)
    }

    /// What a caller returns for a flight's outcome; `None`: try again.
    pub(super) fn settle<T, E, G>(
        &self,
        outcome: Outcome,
        attempt: &mut Attempt<'_, T>,
        caller: Caller<E>,
        sharing: ErrorSharing<E>,
        target: G,
    ) -> Option<Result<Loaded<T>, E>>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        match outcome {
            Outcome::Loaded(value) => match value.downcast::<T>() {
                Ok(value) => {
                    if let Caller::Waiter = caller {
                        self.counters.record_load(LoadEvent::Coalesced);
                    }
                    Some(Ok(Loaded::fresh(value)))
                }
                // Another type was loaded under this key: try again, and load our own.
                Err(_) => None,
            },
            // Another function's loader, under the same key: load our own.
            Outcome::Failed(failure) if !failure.is_for::<E>() => None,
            Outcome::Failed(failure) => Some(match (caller, attempt.stale.is_some()) {
                (Caller::Leader(Some(error)), false) => Err(error),
                _ => self.failed(attempt, failure, sharing, target),
            }),
            Outcome::TimedOut(after) => {
                Some(self.timed_out(attempt, Timeout::Hard(after), None, target))
            }
            Outcome::Abandoned => None,
        }
    }

    /// A caller's answer to a failed load: the stale value (re-armed), else the failure.
    pub(super) fn failed<T, E, G>(
        &self,
        attempt: &Attempt<'_, T>,
        failure: SharedFailure,
        sharing: ErrorSharing<E>,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        if let Some(stale) = self.fall_back(attempt, target, Fallback::Failure) {
            return Ok(stale);
        }
        self.counters.record_load(LoadEvent::SharedFailure);
        Err((sharing.recover)(&failure).unwrap_or_else(|| E::from(Error::LoaderFailed(failure))))
    }

    /// A caller's answer when it stopped waiting: the stale value, else `LoaderTimeout`.
    /// `guard`: this caller led the load, which is dropped.
    pub(super) fn timed_out<T, E, G>(
        &self,
        attempt: &Attempt<'_, T>,
        timeout: Timeout,
        guard: Option<LeaderGuard>,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        let event = match timeout {
            Timeout::Soft(_) => LoadEvent::SoftTimeout,
            Timeout::Hard(_) => LoadEvent::HardTimeout,
        };
        self.counters.record_load(event);
        // A soft timeout lets a detached load go on; a led inline load is dropped, and the
        // throttle keeps the next callers off the source.
        let rearm = guard.is_some() || matches!(timeout, Timeout::Hard(_));
        let fallback = if rearm {
            Fallback::Failure
        } else {
            Fallback::Waiting
        };
        let stale = self.fall_back(attempt, target, fallback);
        if let Some(guard) = guard {
            match &stale {
                // Waiters try again and find the re-armed value.
                Some(_) => drop(guard),
                None => guard.finish(FlightState::TimedOut(timeout.after())),
            }
        }
        match stale {
            Some(stale) => Ok(stale),
            None => Err(E::from(Error::LoaderTimeout {
                after: timeout.after(),
            })),
        }
    }

    /// The stale value, counted; after a failure it is re-armed for the throttle period.
    pub(super) fn fall_back<T, G>(
        &self,
        attempt: &Attempt<'_, T>,
        target: G,
        fallback: Fallback,
    ) -> Option<Loaded<T>>
    where
        T: CacheValue,
        G: Target<T>,
    {
        let stale = attempt.stale.as_ref()?;
        if fallback == Fallback::Failure {
            let now = self.clock.now();
            let stamp = stale
                .stamp
                .rearmed(now, attempt.plan.policy.fail_safe_throttle);
            target.rearm(self, attempt.key, &stale.value, stamp);
        }
        self.counters.record_load(LoadEvent::StaleServed);
        Some(Loaded {
            value: Arc::clone(&stale.value),
            freshness: Freshness::Stale,
        })
    }

    /// The first caller past the refresh point reloads, with its current value to return
    /// if the reload fails or passes the soft (else hard) timeout; the others keep the
    /// current value meanwhile.
    pub(super) async fn refresh_inline<T, E, F, Fut, G>(
        &self,
        key: &str,
        current: Found<Arc<T>>,
        plan: WritePlan,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
    ) -> Loaded<T>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Target<T>,
    {
        let Role::Leader(guard) = self.join::<E>(key) else {
            return Loaded::fresh(current.value);
        };
        self.counters.record_load(LoadEvent::Refresh);
        let policy = plan.policy;
        let deadline = policy
            .soft_timeout
            .or(policy.hard_timeout)
            .and_then(|after| tokio::time::Instant::now().checked_add(after));
        let load = async {
            let loaded = self.run_loader(key, loader).await.map(Arc::new);
            if let Ok(value) = &loaded {
                target.store(self, key, Arc::clone(value), &plan).await;
            }
            loaded
        };
        let loaded = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, load).await.ok(),
            None => Some(load.await),
        };
        match loaded {
            Some(Ok(value)) => {
                guard.finish(FlightState::Loaded(value.clone()));
                return Loaded::fresh(value);
            }
            Some(Err(error)) => {
                let failure = self.share_failure(&error, sharing);
                guard.finish(FlightState::Failed(failure, self.failure_kept_until(&plan)));
            }
            None => drop(guard),
        }
        self.delay_refresh(key, &current, &plan, target);
        Loaded::fresh(current.value)
    }

    /// After a failed refresh, the current value is served without another refresh for the
    /// fail-safe throttle period (or until it expires).
    pub(super) fn delay_refresh<T: CacheValue, G: Target<T>>(
        &self,
        key: &str,
        current: &Found<Arc<T>>,
        plan: &WritePlan,
        target: G,
    ) {
        let stamp = current
            .stamp
            .refresh_delayed(self.clock.now(), plan.policy.fail_safe_throttle);
        target.rearm(self, key, &current.value, stamp);
    }

    pub(super) fn failure_kept_until(&self, plan: &WritePlan) -> Option<quanta::Instant> {
        let failure_ttl = plan.policy.failure_ttl?;
        self.clock.now().checked_add(failure_ttl)
    }

    pub(super) fn share_failure<E: LoaderError>(
        &self,
        error: &E,
        sharing: ErrorSharing<E>,
    ) -> SharedFailure {
        SharedFailure::new::<E>(error.to_string(), (sharing.share)(error))
    }

    pub(super) fn load_blocking<T, E, F, G>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
        G: Target<T>,
    {
        let policy = options.resolve(&self.defaults()).map_err(E::from)?;
        let plan = match self.plan_with(key, policy) {
            Ok(plan) => plan,
            Err(error) => {
                return self
                    .load_uncached_local(key, &error, loader)
                    .map(Loaded::fresh);
            }
        };
        if !self.is_enabled() {
            return self
                .run_loader_local(key, loader)
                .map(|value| Loaded::fresh(Arc::new(value)));
        }
        let (stale, refreshing) = match target.find_local(self, key) {
            Some(found) => match found.age {
                Age::Fresh => return Ok(Loaded::fresh(found.value)),
                Age::RefreshDue => (None, Some(found)),
                Age::Stale => (policy.fail_safe.is_some().then_some(found), None),
            },
            None => (None, None),
        };
        let mut attempt = Attempt { key, plan, stale };
        let flights = &self.flights;
        loop {
            let now = self.clock.now();
            let guard = match flights.join(
                key,
                coalesce::Caller::Blocking,
                now,
                SharedFailure::is_for::<E>,
            ) {
                Role::Leader(guard) => match refreshing {
                    Some(_) => Some(guard),
                    None => match self.stored_meanwhile(key, &attempt, guard) {
                        Ok(done) => return Ok(done),
                        Err(guard) => Some(guard),
                    },
                },
                Role::Waiter(receiver) => {
                    if let Some(current) = refreshing {
                        return Ok(Loaded::fresh(current.value));
                    }
                    let outcome = flights.wait_blocking(receiver);
                    match self.settle(outcome, &mut attempt, Caller::Waiter, sharing, target) {
                        Some(done) => return done,
                        None => continue,
                    }
                }
                Role::Failed(failure) => {
                    if let Some(current) = refreshing {
                        return Ok(Loaded::fresh(current.value));
                    }
                    return self.failed(&attempt, failure, sharing, target);
                }
                Role::Alone => None,
            };
            if refreshing.is_some() {
                self.counters.record_load(LoadEvent::Refresh);
            }
            let loaded = self.run_loader_local(key, loader).map(Arc::new);
            return match loaded {
                Ok(value) => {
                    target.store_local(self, key, Arc::clone(&value), &plan);
                    if let Some(guard) = guard {
                        guard.finish(FlightState::Loaded(value.clone()));
                    }
                    Ok(Loaded::fresh(value))
                }
                Err(error) => {
                    if let Some(guard) = guard {
                        let failure = self.share_failure(&error, sharing);
                        guard.finish(FlightState::Failed(failure, self.failure_kept_until(&plan)));
                    }
                    if let Some(current) = refreshing {
                        self.delay_refresh(key, &current, &plan, target);
                        return Ok(Loaded::fresh(current.value));
                    }
                    match self.fall_back(&attempt, target, Fallback::Failure) {
                        Some(stale) => Ok(stale),
                        None => Err(error),
                    }
                }
            };
        }
    }
}

/// How a load begins, from what the tiers hold.
pub(super) enum Begin<'k, T, E> {
    /// A fresh hit, or options refused.
    Done(Result<Loaded<T>, E>),
    /// Load without the cache: `cache_enabled` is off (`None`), or the key or TTL is refused
    /// (counted and logged).
    Outside(Option<Error>),
    /// A live value past its refresh point.
    Refresh(Found<Arc<T>>, WritePlan),
    /// A miss, or a stale value that a failed load may fall back on.
    Load(Attempt<'k, T>),
}

/// One caller's load of a key.
pub(super) struct Attempt<'k, T> {
    pub(super) key: &'k str,
    pub(super) plan: WritePlan,
    /// A value past its TTL, kept by fail-safe (only when this call allows fail-safe).
    pub(super) stale: Option<Found<Arc<T>>>,
}

impl<T> Attempt<'_, T> {
    /// When this caller stops waiting: at the soft timeout when it has a stale value to
    /// return, else at the hard timeout.
    pub(super) fn deadline(&self) -> (Option<tokio::time::Instant>, Timeout) {
        let policy = &self.plan.policy;
        let timeout = match (
            self.stale.is_some(),
            policy.soft_timeout,
            policy.hard_timeout,
        ) {
            (true, Some(soft), _) => Timeout::Soft(soft),
            (_, _, Some(hard)) => Timeout::Hard(hard),
            _ => return (None, Timeout::Hard(Duration::MAX)),
        };
        let deadline = tokio::time::Instant::now().checked_add(timeout.after());
        (deadline, timeout)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Timeout {
    Soft(Duration),
    Hard(Duration),
}

impl Timeout {
    fn after(self) -> Duration {
        match self {
            Timeout::Soft(after) | Timeout::Hard(after) => after,
        }
    }
}

/// Why a caller falls back on the stale value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fallback {
    /// The load failed or was given up: re-arm the value for the throttle period.
    Failure,
    /// The load goes on without this caller (a soft timeout).
    Waiting,
}

/// Whose outcome a caller settles: another caller's load, or its own run in a task (with its
/// own error, if the load failed).
pub(super) enum Caller<E> {
    Waiter,
    Leader(Option<E>),
}
