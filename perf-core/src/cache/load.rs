//! The get_or_load family: read through the tiers, else run one loader per key and store its
//! value; when the source fails or slows, share its failure, fall back on a stale value
//! (fail-safe), stop waiting at the timeouts, and reload hot keys before they expire.
//!
//! Every caller of a key, the one running the loader included, ends in one of the ways
//! [`Attempt`] decides: the loaded value; the stale value (after a failure, a timeout, or a
//! soft timeout while the load goes on); or the failure, shared. Two ways to run the loader:
//! - *inline* (`get_or_load`, `get_or_load_with`): the loader may borrow from its caller, so
//!   it runs in the caller's future. A load given up at a timeout is dropped (FusionCache's
//!   "background completion" off); the fail-safe throttle keeps the next calls off the source.
//! - *detached* (`get_or_load_detached`): a `'static` loader runs in a tokio task, so a load
//!   that outlives its caller's patience still fills the cache, and a refresh never makes a
//!   caller wait. Background refreshes are bounded by [`MAX_BACKGROUND_LOADS`].

use std::{fmt, future::Future, sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::{
    CacheValue, MultiLevelCache, SharedValue, Tier, WritePlan,
    coalesce::{self, Caller, FlightState, LeaderGuard, Outcome, Role},
    l1::{Found, Lookup},
    options::{ErrorSharing, Freshness, LoadOptions, Loaded, SharedFailure},
    stamp::Age,
    stats::{Event, LoadEvent, Op},
};
use crate::Error;

/// Background loads (refreshes) one cache runs at once; a refresh that finds none free is
/// skipped, and the next read past the refresh point tries again.
pub(crate) const MAX_BACKGROUND_LOADS: usize = 64;

/// What a loader's error must allow: callers may receive the cache's own failures (a hard
/// timeout, another caller's failure) converted with `From`, and a failure's message is shared.
/// `std::io::Error`, `anyhow::Error`, `Box<dyn Error + Send + Sync>` and [`Error`] qualify;
/// an application's error enum gets a `#[from] perf::Error` variant.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cache loader's error",
    label = "needs `From<perf::Error>` (for timeouts and shared failures), `Display`, `Send`, `Sync`",
    note = "add a variant such as `#[error(transparent)] Cache(#[from] perf::Error)` to your error type"
)]
pub trait LoaderError: From<Error> + fmt::Display + Send + Sync + 'static {}
impl<E: From<Error> + fmt::Display + Send + Sync + 'static> LoaderError for E {}

impl MultiLevelCache {
    /// The value at `key` (down to `tier`), or else the loader's value, stored down to `tier`
    /// for `ttl` (default `cache_ttl`), with the configuration's fail-safe, timeout, refresh
    /// and jitter settings.
    ///
    /// Concurrent misses on one key in this process run one loader, and every caller gets its
    /// outcome: its value, or its failure (the caller whose loader it was gets its own error;
    /// the others get [`Error::LoaderFailed`] carrying its message, converted with `From`).
    /// Caching never fails the call: a key, TTL or value the cache refuses is loaded and
    /// returned uncached, counted and logged. See [`get_or_load_with`](Self::get_or_load_with)
    /// for per-call settings and whether the value was stale.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let options = LoadOptions::new(tier).ttl_or(ttl);
        self.load_with(key, &options, ErrorSharing::by_message(), loader)
            .await
            .map(|loaded| loaded.value)
    }

    /// [`get_or_load`](Self::get_or_load) with per-call [`LoadOptions`], telling whether the
    /// value is fresh or stale (fail-safe). The loader runs in the caller's future, so it may
    /// borrow; a load given up at a timeout is dropped, and a refresh-ahead is run by the
    /// first caller past the refresh point (the others keep the current value). Options that
    /// cannot work together are refused with [`Error::InvalidLoadOptions`].
    pub async fn get_or_load_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_with(key, options, ErrorSharing::by_message(), loader)
            .await
    }

    /// [`get_or_load_with`](Self::get_or_load_with) with a loader that runs in a tokio task:
    /// a load that passes the soft timeout goes on and fills the cache when it finishes (until
    /// the hard timeout, where it is dropped), and refresh-ahead reloads in the background
    /// while every caller keeps the current value.
    pub async fn get_or_load_detached<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.load_detached_with(key, options, ErrorSharing::by_message(), loader)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) in L1 only, for values without serde.
    pub async fn get_or_load_l1<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let options = LoadOptions::new(Tier::L1).ttl_or(ttl);
        self.load_l1_with(key, &options, ErrorSharing::by_message(), loader)
            .await
            .map(|loaded| loaded.value)
    }

    /// For `#[cache_result]`: [`get_or_load_with`](Self::get_or_load_with) with a choice of
    /// how errors are shared.
    #[doc(hidden)]
    pub async fn load_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tier = self.effective(options.tier_of());
        self.load_inline(key, options, sharing, loader, AllTiers(tier))
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_with`](Self::get_or_load_with) in L1 only.
    #[doc(hidden)]
    pub async fn load_l1_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_inline(key, options, sharing, loader, L1Only)
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_detached`](Self::get_or_load_detached) with a
    /// choice of how errors are shared.
    #[doc(hidden)]
    pub async fn load_detached_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let tier = self.effective(options.tier_of());
        self.load_detached(key, options, sharing, loader, AllTiers(tier))
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_detached`](Self::get_or_load_detached) in L1 only.
    #[doc(hidden)]
    pub async fn load_l1_detached_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.load_detached(key, options, sharing, loader, L1Only)
            .await
    }

    // ----- the two ways to load -----

    async fn load_inline<T, E, F, Fut, G>(
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
            Begin::Bypass => {
                return self
                    .run_loader(loader)
                    .await
                    .map(|v| Loaded::fresh(Arc::new(v)));
            }
            Begin::Uncached(error) => {
                return self
                    .load_uncached(key, error, loader)
                    .await
                    .map(Loaded::fresh);
            }
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

    async fn load_detached<T, E, F, Fut, G>(
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
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        G: Target<T>,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Polled outside tokio: nothing to run a task on.
            return self
                .load_inline(key, options, sharing, loader, target)
                .await;
        };
        let mut attempt = match self.begin(key, options, target).await {
            Begin::Done(result) => return result,
            Begin::Bypass => {
                return self
                    .run_loader(loader)
                    .await
                    .map(|v| Loaded::fresh(Arc::new(v)));
            }
            Begin::Uncached(error) => {
                return self
                    .load_uncached(key, error, loader)
                    .await
                    .map(Loaded::fresh);
            }
            Begin::Refresh(current, plan) => {
                let value = Arc::clone(&current.value);
                if let Role::Leader(guard) = self.join::<E>(key) {
                    self.refresh_detached(
                        &runtime, guard, key, current, plan, sharing, loader, target,
                    );
                }
                return Ok(Loaded::fresh(value));
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
                    let receiver = guard.subscribe();
                    let (own_error, own_error_rx) = oneshot::channel();
                    let job = Job {
                        key: key.to_owned(),
                        plan: attempt.plan,
                        refreshing: None,
                        permit: None,
                    };
                    let task = self.clone().load_in_task(
                        guard,
                        job,
                        sharing,
                        loader,
                        target,
                        Some(own_error),
                    );
                    runtime.spawn(task);
                    return self
                        .follow_own(receiver, own_error_rx, &mut attempt, sharing, target)
                        .await;
                }
                Role::Waiter(receiver) => {
                    if let Some(done) = self.follow(receiver, &mut attempt, sharing, target).await {
                        return done;
                    }
                }
                Role::Failed(failure) => return self.failed(&attempt, failure, sharing, target),
                Role::Alone => {}
            }
        }
    }

    // ----- the steps of a load -----

    fn join<E: 'static>(&self, key: &str) -> Role {
        let now = self.inner.clock.now();
        self.inner
            .flights
            .join(key, Caller::Async, now, SharedFailure::is_for::<E>)
    }

    /// Settings, the write plan, and what the tiers hold.
    async fn begin<'k, T, E, G>(
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
        let policy = match options.resolve(&self.inner.defaults) {
            Ok(policy) => policy,
            Err(error) => return Begin::Done(Err(E::from(error))),
        };
        let plan = match self.plan_with(key, policy) {
            Ok(plan) => plan,
            Err(error) => return Begin::Uncached(error),
        };
        if !self.is_enabled() {
            return Begin::Bypass;
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
    fn stored_meanwhile<T: CacheValue>(
        &self,
        key: &str,
        attempt: &Attempt<'_, T>,
        guard: LeaderGuard,
    ) -> Result<Loaded<T>, LeaderGuard> {
        let found = match self
            .inner
            .l1
            .find::<T>(key, &self.inner.clock, &self.inner.counters)
        {
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
    async fn lead_inline<T, E, F, Fut, G>(
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
            let loaded = self.run_loader(loader).await.map(Arc::new);
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
    async fn follow<T, E, G>(
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
        self.settle(outcome, attempt, None, sharing, target)
    }

    /// Waits for this caller's own load, running in a task.
    async fn follow_own<T, E, G>(
        &self,
        receiver: tokio::sync::watch::Receiver<FlightState>,
        mut own_error: oneshot::Receiver<E>,
        attempt: &mut Attempt<'_, T>,
        sharing: ErrorSharing<E>,
        target: G,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        G: Target<T>,
    {
        let (deadline, timeout) = attempt.deadline();
        let Some(outcome) = coalesce::wait(receiver, deadline).await else {
            return self.timed_out(attempt, timeout, None, target);
        };
        let own = own_error.try_recv().ok();
        match self.settle(outcome, attempt, own, sharing, target) {
            Some(done) => done,
            // The task was dropped unfinished (its runtime is shutting down).
            None => self.failed(
                attempt,
                SharedFailure::new::<E>("the load's task ended before it finished".into(), None),
                sharing,
                target,
            ),
        }
    }

    /// What a caller returns for a flight's outcome; `None`: try again.
    fn settle<T, E, G>(
        &self,
        outcome: Outcome,
        attempt: &mut Attempt<'_, T>,
        own_error: Option<E>,
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
                    if own_error.is_none() {
                        self.inner.counters.record_load(LoadEvent::Coalesced);
                    }
                    Some(Ok(Loaded::fresh(value)))
                }
                // Another type was loaded under this key: try again, and load our own.
                Err(_) => None,
            },
            // Another function's loader, under the same key: load our own.
            Outcome::Failed(failure) if !failure.is_for::<E>() => None,
            Outcome::Failed(failure) => Some(match (own_error, attempt.stale.is_some()) {
                (Some(error), false) => Err(error),
                (_, _) => self.failed(attempt, failure, sharing, target),
            }),
            Outcome::TimedOut(after) => {
                Some(self.timed_out(attempt, Timeout::Hard(after), None, target))
            }
            Outcome::Abandoned => None,
        }
    }

    /// A caller's answer to a failed load: the stale value (re-armed), else the failure.
    fn failed<T, E, G>(
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
        self.inner.counters.record_load(LoadEvent::SharedFailure);
        Err((sharing.recover)(&failure).unwrap_or_else(|| E::from(Error::LoaderFailed(failure))))
    }

    /// A caller's answer when it stopped waiting: the stale value, else `LoaderTimeout`.
    /// `guard`: this caller led the load, which is dropped.
    fn timed_out<T, E, G>(
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
        self.inner.counters.record_load(event);
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
    fn fall_back<T, G>(
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
            let now = self.inner.clock.now();
            let stamp = stale
                .stamp
                .rearmed(now, attempt.plan.policy.fail_safe_throttle);
            target.rearm(self, attempt.key, &stale.value, stamp);
        }
        self.inner.counters.record_load(LoadEvent::StaleServed);
        Some(Loaded {
            value: Arc::clone(&stale.value),
            freshness: Freshness::Stale,
        })
    }

    /// The first caller past the refresh point reloads, with its current value to return
    /// if the reload fails or passes the soft (else hard) timeout; the others keep the
    /// current value meanwhile.
    async fn refresh_inline<T, E, F, Fut, G>(
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
        self.inner.counters.record_load(LoadEvent::Refresh);
        let policy = plan.policy;
        let deadline = policy
            .soft_timeout
            .or(policy.hard_timeout)
            .and_then(|after| tokio::time::Instant::now().checked_add(after));
        let load = async {
            let loaded = self.run_loader(loader).await.map(Arc::new);
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

    /// Starts a background reload of a value past its refresh point, if a background slot is
    /// free; this caller keeps the current value.
    #[allow(clippy::too_many_arguments)]
    fn refresh_detached<T, E, F, Fut, G>(
        &self,
        runtime: &tokio::runtime::Handle,
        guard: LeaderGuard,
        key: &str,
        current: Found<Arc<T>>,
        plan: WritePlan,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
    ) where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        G: Target<T>,
    {
        let Ok(permit) = Arc::clone(&self.inner.background).try_acquire_owned() else {
            return;
        };
        self.inner.counters.record_load(LoadEvent::Refresh);
        let job = Job {
            key: key.to_owned(),
            plan,
            refreshing: Some(current),
            permit: Some(permit),
        };
        runtime.spawn(
            self.clone()
                .load_in_task(guard, job, sharing, loader, target, None),
        );
    }

    /// A detached load: runs the loader until it ends or passes the hard timeout, stores its
    /// value and reports to the flight, whoever is still waiting.
    async fn load_in_task<T, E, F, Fut, G>(
        self,
        guard: LeaderGuard,
        job: Job<T>,
        sharing: ErrorSharing<E>,
        loader: F,
        target: G,
        own_error: Option<oneshot::Sender<E>>,
    ) where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        G: Target<T>,
    {
        let hard = job.plan.policy.hard_timeout;
        let load = self.run_loader(loader);
        let loaded = match hard {
            Some(hard) => tokio::time::timeout(hard, load).await.ok(),
            None => Some(load.await),
        };
        match loaded {
            Some(Ok(value)) => {
                let value = Arc::new(value);
                target
                    .store(&self, &job.key, Arc::clone(&value), &job.plan)
                    .await;
                guard.finish(FlightState::Loaded(value));
                return;
            }
            Some(Err(error)) => {
                let failure = self.share_failure(&error, sharing);
                // Before the flight ends, so that its leader finds its own error.
                if let Some(own_error) = own_error {
                    drop(own_error.send(error));
                }
                let kept_until = self.failure_kept_until(&job.plan);
                guard.finish(FlightState::Failed(failure, kept_until));
            }
            None => {
                self.inner.counters.record_load(LoadEvent::HardTimeout);
                guard.finish(FlightState::TimedOut(hard.unwrap_or_default()));
            }
        }
        if let Some(current) = &job.refreshing {
            self.delay_refresh(&job.key, current, &job.plan, target);
        }
        drop(job.permit);
    }

    /// After a failed refresh, the current value is served without another refresh for the
    /// fail-safe throttle period (or until it expires).
    fn delay_refresh<T: CacheValue, G: Target<T>>(
        &self,
        key: &str,
        current: &Found<Arc<T>>,
        plan: &WritePlan,
        target: G,
    ) {
        let next_try = self.inner.clock.now() + plan.policy.fail_safe_throttle;
        let stamp = super::Stamp {
            fresh_until: next_try.min(current.stamp.expires_at),
            ..current.stamp
        };
        target.rearm(self, key, &current.value, stamp);
    }

    fn failure_kept_until(&self, plan: &WritePlan) -> Option<quanta::Instant> {
        let failure_ttl = plan.policy.failure_ttl?;
        self.inner.clock.now().checked_add(failure_ttl)
    }

    // ----- synchronous loads -----

    /// [`get_or_load`](Self::get_or_load) for synchronous code: L1, then L2 when `tier`
    /// reaches it; the remote tier is not used. Concurrent misses on one key run one loader,
    /// the other callers blocking until it finishes and sharing its outcome; a caller that
    /// finds an async `get_or_load` loading the key runs its own loader rather than block
    /// that one's runtime. Fail-safe and failure caching apply; timeouts do not (a
    /// synchronous loader cannot be stopped), and a refresh is run by the first caller past
    /// the refresh point.
    pub fn get_or_load_local<T, E, F>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let options = LoadOptions::new(tier).ttl_or(ttl);
        self.load_local_with(key, &options, ErrorSharing::by_message(), loader)
            .map(|loaded| loaded.value)
    }

    /// [`get_or_load_local`](Self::get_or_load_local) in L1 only, for values without serde.
    pub fn get_or_load_l1_local<T, E, F>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let options = LoadOptions::new(Tier::L1).ttl_or(ttl);
        self.load_l1_local_with(key, &options, ErrorSharing::by_message(), loader)
            .map(|loaded| loaded.value)
    }

    /// For `#[cache_result]` on synchronous fns.
    #[doc(hidden)]
    pub fn load_local_with<T, E, F>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let tier = options.tier_of().min(Tier::L2);
        self.load_blocking(key, options, sharing, loader, AllTiers(tier))
    }

    /// For `#[cache_result]` on synchronous fns, in L1 only.
    #[doc(hidden)]
    pub fn load_l1_local_with<T, E, F>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        self.load_blocking(key, options, sharing, loader, L1Only)
    }

    fn load_blocking<T, E, F, G>(
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
        let policy = options.resolve(&self.inner.defaults).map_err(E::from)?;
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
                .run_loader_local(loader)
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
        let flights = &self.inner.flights;
        loop {
            let now = self.inner.clock.now();
            let guard = match flights.join(key, Caller::Blocking, now, SharedFailure::is_for::<E>) {
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
                    match self.settle(outcome, &mut attempt, None, sharing, target) {
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
                self.inner.counters.record_load(LoadEvent::Refresh);
            }
            let loaded = self.run_loader_local(loader).map(Arc::new);
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

    // ----- loads that bypass the cache -----

    /// For `#[cache_result]`: a call of `function` whose arguments could not be written into
    /// a key runs its loader uncached, refused and counted as any uncacheable load.
    #[doc(hidden)]
    pub async fn load_unkeyed<T, E, F, Fut>(
        &self,
        function: &'static str,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.is_enabled() {
            return self.run_loader(loader).await.map(Arc::new);
        }
        let error = Error::UnkeyableArguments { function };
        self.load_uncached(function, error, loader).await
    }

    /// [`load_unkeyed`](Self::load_unkeyed) for synchronous loaders.
    #[doc(hidden)]
    pub fn load_unkeyed_local<T, E>(
        &self,
        function: &'static str,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if !self.is_enabled() {
            return self.run_loader_local(loader).map(Arc::new);
        }
        let error = Error::UnkeyableArguments { function };
        self.load_uncached_local(function, &error, loader)
    }

    async fn load_uncached<T, E, F, Fut>(
        &self,
        key: &str,
        error: Error,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.refused_for_load(key, &error);
        self.run_loader(loader).await.map(Arc::new)
    }

    fn load_uncached_local<T, E>(
        &self,
        key: &str,
        error: &Error,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        self.refused_for_load(key, error);
        self.run_loader_local(loader).map(Arc::new)
    }

    fn refused_for_load(&self, key: &str, error: &Error) {
        let shown: String = key.chars().take(64).collect();
        tracing::warn!(key = %shown, %error, "value not cacheable; loading uncached");
        self.inner.counters.record(Tier::L1, Event::Refused);
    }

    async fn run_loader<T, E, F, Fut>(&self, loader: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.counters.record_load(LoadEvent::Run);
        self.finished_loader(loader().await)
    }

    fn run_loader_local<T, E>(&self, loader: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.inner.counters.record_load(LoadEvent::Run);
        self.finished_loader(loader())
    }

    fn finished_loader<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.inner.counters.record_load(LoadEvent::Failed);
        }
        result
    }

    fn share_failure<E: LoaderError>(&self, error: &E, sharing: ErrorSharing<E>) -> SharedFailure {
        SharedFailure::new::<E>(error.to_string(), (sharing.share)(error))
    }
}

/// How a load begins, from what the tiers hold.
enum Begin<'k, T, E> {
    /// A fresh hit, or options refused.
    Done(Result<Loaded<T>, E>),
    /// `cache_enabled` is off: the loader is called straight.
    Bypass,
    /// The key or TTL is refused: load uncached.
    Uncached(Error),
    /// A live value past its refresh point.
    Refresh(Found<Arc<T>>, WritePlan),
    /// A miss, or a stale value that a failed load may fall back on.
    Load(Attempt<'k, T>),
}

/// One caller's load of a key.
struct Attempt<'k, T> {
    key: &'k str,
    plan: WritePlan,
    /// A value past its TTL, kept by fail-safe (only when this call allows fail-safe).
    stale: Option<Found<Arc<T>>>,
}

impl<T> Attempt<'_, T> {
    /// When this caller stops waiting: at the soft timeout when it has a stale value to
    /// return, else at the hard timeout.
    fn deadline(&self) -> (Option<tokio::time::Instant>, Timeout) {
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
enum Timeout {
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
enum Fallback {
    /// The load failed or was given up: re-arm the value for the throttle period.
    Failure,
    /// The load goes on without this caller (a soft timeout).
    Waiting,
}

/// Where a load reads and stores: every tier down to one (values with serde), or L1 alone.
pub(crate) trait Target<T: CacheValue>: Copy + Send + Sync + 'static {
    /// The local tiers' value, in any age.
    fn find_local(&self, cache: &MultiLevelCache, key: &str) -> Option<Found<Arc<T>>>;

    /// The remote tier's value, when this target reaches it.
    fn find_remote(
        &self,
        cache: &MultiLevelCache,
        key: &str,
    ) -> impl Future<Output = Option<Found<Arc<T>>>> + Send;

    /// Stores a loaded value; failures are logged, never the caller's.
    fn store(
        &self,
        cache: &MultiLevelCache,
        key: &str,
        value: Arc<T>,
        plan: &WritePlan,
    ) -> impl Future<Output = ()> + Send;

    /// [`store`](Self::store) in the local tiers only, for synchronous loads.
    fn store_local(&self, cache: &MultiLevelCache, key: &str, value: Arc<T>, plan: &WritePlan);

    /// Gives a stale value a new lifetime in the local tiers.
    fn rearm(&self, cache: &MultiLevelCache, key: &str, value: &Arc<T>, stamp: super::Stamp) {
        cache
            .inner
            .l1
            .rearm(key, Arc::clone(value) as _, stamp, &cache.inner.clock);
    }
}

/// Every tier down to this one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllTiers(pub(crate) Tier);

impl<T: SharedValue> Target<T> for AllTiers {
    fn find_local(&self, cache: &MultiLevelCache, key: &str) -> Option<Found<Arc<T>>> {
        cache.local_find(key, self.0, Op::GetOrLoad)
    }

    async fn find_remote(&self, cache: &MultiLevelCache, key: &str) -> Option<Found<Arc<T>>> {
        cache.remote_find_at(key, self.0, Op::GetOrLoad).await
    }

    async fn store(&self, cache: &MultiLevelCache, key: &str, value: Arc<T>, plan: &WritePlan) {
        match cache.store(key, value, self.0, plan).await {
            Ok(()) => {}
            // The remote tier reports its own outages; one line per call would flood.
            Err(error @ Error::Remote(_)) => {
                tracing::debug!(key, %error, "loaded value not stored remotely");
            }
            Err(error) => tracing::warn!(key, %error, "loaded value not cached"),
        }
    }

    fn store_local(&self, cache: &MultiLevelCache, key: &str, value: Arc<T>, plan: &WritePlan) {
        if let Err(error) = cache.store_local(key, value, self.0.min(Tier::L2), plan) {
            tracing::warn!(key, %error, "loaded value not cached");
        }
    }

    fn rearm(&self, cache: &MultiLevelCache, key: &str, value: &Arc<T>, stamp: super::Stamp) {
        cache
            .inner
            .l1
            .rearm(key, Arc::clone(value) as _, stamp, &cache.inner.clock);
        if self.0 >= Tier::L2 {
            cache.inner.l2.restamp(key, stamp);
        }
    }
}

/// L1 alone, for values without serde.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L1Only;

impl<T: CacheValue> Target<T> for L1Only {
    fn find_local(&self, cache: &MultiLevelCache, key: &str) -> Option<Found<Arc<T>>> {
        cache.l1_find(key, Op::GetOrLoad)
    }

    async fn find_remote(&self, _: &MultiLevelCache, _: &str) -> Option<Found<Arc<T>>> {
        None
    }

    async fn store(&self, cache: &MultiLevelCache, key: &str, value: Arc<T>, plan: &WritePlan) {
        self.store_local(cache, key, value, plan);
    }

    fn store_local(&self, cache: &MultiLevelCache, key: &str, value: Arc<T>, plan: &WritePlan) {
        cache.insert_l1_only(key, value, plan.stamp);
    }
}

/// A detached load's work order.
struct Job<T> {
    key: String,
    plan: WritePlan,
    /// The live value a refresh replaces, given a later refresh point if the refresh fails.
    refreshing: Option<Found<Arc<T>>>,
    /// A background slot, for refreshes.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}
