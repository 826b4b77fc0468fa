//! Loads run in a tokio task (`get_or_load_detached`): a load that outlives its caller's
//! patience still fills the cache, and a refresh-ahead never makes a caller wait. Background
//! refreshes are bounded by [`MAX_BACKGROUND_LOADS`](super::load::MAX_BACKGROUND_LOADS).

use std::{future::Future, sync::Arc};

use tokio::sync::oneshot;

use super::{
    Engine, WritePlan,
    attempt::{Attempt, Begin, Caller},
    target::Target,
};
use crate::{
    SharedFailure,
    cache::{
        CacheValue,
        coalesce::{self, FlightState, LeaderGuard, Role},
        entry::Found,
        options::{ErrorSharing, LoadOptions, Loaded, LoaderError},
        stats::LoadEvent,
    },
};

impl Engine {
    pub(super) async fn load_detached<T, E, F, Fut, G>(
        self: &Arc<Self>,
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
            Begin::Outside(refused) => return self.load_outside(key, refused, loader).await,
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
                        stale: attempt.stale.clone(),
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
        match self.settle(outcome, attempt, Caller::Leader(own), sharing, target) {
            Some(done) => done,
            // The task was dropped unfinished (its runtime is shutting down).
            None => self.failed(
                attempt,
                SharedFailure::new::<E>("the load's task ended before it finished (it panicked, or its runtime shut down)".into(), None),
                sharing,
                target,
            ),
        }
    }

    /// Starts a background reload of a value past its refresh point, if a background slot is
    /// free; this caller keeps the current value.
    #[allow(clippy::too_many_arguments)]
    fn refresh_detached<T, E, F, Fut, G>(
        self: &Arc<Self>,
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
        let Ok(permit) = Arc::clone(&self.background).try_acquire_owned() else {
            return;
        };
        self.counters.record_load(LoadEvent::Refresh);
        let job = Job {
            key: key.to_owned(),
            plan,
            refreshing: Some(current),
            stale: None,
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
        self: Arc<Self>,
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
        let load = self.run_loader(&job.key, loader);
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
                self.after_failed_load(&job, target);
                let kept_until = self.failure_kept_until(&job.plan);
                guard.finish(FlightState::Failed(failure, kept_until));
            }
            None => {
                self.counters.record_load(LoadEvent::HardTimeout);
                self.after_failed_load(&job, target);
                guard.finish(FlightState::TimedOut(hard.unwrap_or_default()));
            }
        }
        drop(job.permit);
    }

    /// After a detached load failed or timed out, before its flight ends: the value at hand
    /// is served without asking the source again for the throttle period, even when every
    /// caller stopped waiting at the soft timeout.
    fn after_failed_load<T: CacheValue, G: Target<T>>(&self, job: &Job<T>, target: G) {
        if let Some(current) = &job.refreshing {
            self.delay_refresh(&job.key, current, &job.plan, target);
        }
        if let Some(stale) = &job.stale {
            let throttle = job.plan.policy.fail_safe_throttle;
            let stamp = stale.stamp.rearmed(self.clock.now(), throttle);
            target.rearm(self, &job.key, &stale.value, stamp);
        }
    }
}

/// A detached load's work order.
struct Job<T> {
    key: String,
    plan: WritePlan,
    /// The live value a refresh replaces, given a later refresh point if the refresh fails.
    refreshing: Option<Found<Arc<T>>>,
    /// The stale value a failed load falls back on, re-armed for the throttle period.
    stale: Option<Found<Arc<T>>>,
    /// A background slot, for refreshes.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}
