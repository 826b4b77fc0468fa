//! `get_or_load`: read through the tiers, else run one loader per key and store its value.

use std::{future::Future, sync::Arc, time::Duration};

use super::{
    CacheValue, MultiLevelCache, SharedValue, Tier,
    coalesce::{self, Caller, FlightState, Outcome, Role},
    l1::Lookup,
    stats::{Event, LoadEvent, Op},
};
use crate::Error;

impl MultiLevelCache {
    /// The value at `key` (down to `tier`), or else the loader's value, stored down to `tier`.
    ///
    /// Concurrent misses on one key in this process run one loader and all receive its value.
    /// A loader error goes to the caller whose loader it was and is not cached; callers that
    /// were waiting on that loader then run their own. Caching never fails the call: a key,
    /// TTL or value the cache refuses is loaded and returned uncached, counted and logged.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.is_enabled() {
            return self.run_loader(loader).await.map(Arc::new);
        }
        let tier = self.effective(tier);
        let plan = match self.plan_write(key, ttl) {
            Ok(plan) => plan,
            Err(error) => return self.load_uncached(key, error, loader).await,
        };
        if let Some(value) = self.local_lookup(key, tier, Op::GetOrLoad) {
            return Ok(value);
        }
        if let Some(value) = self.remote_lookup_at(key, tier, Op::GetOrLoad).await {
            return Ok(value);
        }
        self.load_coalesced(key, loader, |value| async move {
            match self.store(key, value, tier, &plan).await {
                Ok(()) => {}
                // The remote tier reports its own outages; one line per call would flood.
                Err(error @ Error::Remote(_)) => {
                    tracing::debug!(key, %error, "loaded value not stored remotely");
                }
                Err(error) => tracing::warn!(key, %error, "loaded value not cached"),
            }
        })
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
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.is_enabled() {
            return self.run_loader(loader).await.map(Arc::new);
        }
        let plan = match self.plan_write(key, ttl) {
            Ok(plan) => plan,
            Err(error) => return self.load_uncached(key, error, loader).await,
        };
        if let Some(value) = self.l1_lookup(key, Op::GetOrLoad) {
            return Ok(value);
        }
        self.load_coalesced(key, loader, |value: Arc<T>| async move {
            self.insert_l1_only(key, value, plan.expires_at);
        })
        .await
    }

    /// [`get_or_load`](Self::get_or_load) for synchronous code: L1, then L2 when `tier`
    /// reaches it; the remote tier is not used. Concurrent misses on one key run one loader,
    /// the other callers blocking until it finishes; a caller that finds an async
    /// `get_or_load` loading the key runs its own loader rather than block that one's runtime.
    pub fn get_or_load_local<T, E, F>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        F: FnOnce() -> Result<T, E>,
    {
        if !self.is_enabled() {
            return self.run_loader_local(loader).map(Arc::new);
        }
        let tier = tier.min(Tier::L2);
        let plan = match self.plan_write(key, ttl) {
            Ok(plan) => plan,
            Err(error) => return self.load_uncached_local(key, &error, loader),
        };
        if let Some(value) = self.local_lookup(key, tier, Op::GetOrLoad) {
            return Ok(value);
        }
        self.load_coalesced_blocking(key, loader, |value| {
            if let Err(error) = self.store_local(key, value, tier, &plan) {
                tracing::warn!(key, %error, "loaded value not cached");
            }
        })
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
        F: FnOnce() -> Result<T, E>,
    {
        if !self.is_enabled() {
            return self.run_loader_local(loader).map(Arc::new);
        }
        let plan = match self.plan_write(key, ttl) {
            Ok(plan) => plan,
            Err(error) => return self.load_uncached_local(key, &error, loader),
        };
        if let Some(value) = self.l1_lookup(key, Op::GetOrLoad) {
            return Ok(value);
        }
        self.load_coalesced_blocking(key, loader, |value| {
            self.insert_l1_only(key, value, plan.expires_at);
        })
    }

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

    /// Runs `loader` once per key across concurrent callers and `store`s its value.
    async fn load_coalesced<T, E, F, Fut, S, SFut>(
        &self,
        key: &str,
        loader: F,
        store: S,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: FnOnce(Arc<T>) -> SFut,
        SFut: Future<Output = ()>,
    {
        loop {
            let next = match self.inner.flights.join(key, Caller::Async) {
                Role::Leader(guard) => {
                    if let Some(value) = self.stored_meanwhile(key) {
                        return Ok(value);
                    }
                    let loaded = self.run_loader(loader).await.map(Arc::new);
                    if let Ok(value) = &loaded {
                        store(Arc::clone(value)).await;
                    }
                    return lead(guard, loaded);
                }
                Role::Waiter(receiver) => self.after_wait(coalesce::wait(receiver).await),
                Role::Alone => Next::LoadOwn,
            };
            match next {
                Next::Done(value) => return Ok(value),
                Next::LoadOwn => break,
                Next::Retry => {}
            }
        }
        let value = Arc::new(self.run_loader(loader).await?);
        store(Arc::clone(&value)).await;
        Ok(value)
    }

    /// [`load_coalesced`](Self::load_coalesced) for synchronous loaders: waiters block.
    fn load_coalesced_blocking<T, E, F, S>(
        &self,
        key: &str,
        loader: F,
        store: S,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
        S: FnOnce(Arc<T>),
    {
        let flights = &self.inner.flights;
        loop {
            let next = match flights.join(key, Caller::Blocking) {
                Role::Leader(guard) => {
                    if let Some(value) = self.stored_meanwhile(key) {
                        return Ok(value);
                    }
                    let loaded = self.run_loader_local(loader).map(Arc::new);
                    if let Ok(value) = &loaded {
                        store(Arc::clone(value));
                    }
                    return lead(guard, loaded);
                }
                Role::Waiter(receiver) => self.after_wait(flights.wait_blocking(receiver)),
                Role::Alone => Next::LoadOwn,
            };
            match next {
                Next::Done(value) => return Ok(value),
                Next::LoadOwn => break,
                Next::Retry => {}
            }
        }
        let value = Arc::new(self.run_loader_local(loader)?);
        store(Arc::clone(&value));
        Ok(value)
    }

    /// A leader that finished between our miss and our join has stored its value.
    fn stored_meanwhile<T: CacheValue>(&self, key: &str) -> Option<Arc<T>> {
        match self
            .inner
            .l1
            .get::<T>(key, &self.inner.clock, &self.inner.counters)
        {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss | Lookup::WrongType => None,
        }
    }

    fn after_wait<T: CacheValue>(&self, outcome: Outcome) -> Next<T> {
        match outcome {
            Outcome::Loaded(shared) => match shared.downcast::<T>() {
                Ok(value) => {
                    self.inner.counters.record_load(LoadEvent::Coalesced);
                    Next::Done(value)
                }
                // The leader loaded another type under this key.
                Err(_) => Next::LoadOwn,
            },
            // The leader's error is its own.
            Outcome::Failed => Next::LoadOwn,
            Outcome::Abandoned => Next::Retry,
        }
    }
}

/// What a caller does after its flight's leader finished.
enum Next<T> {
    Done(Arc<T>),
    LoadOwn,
    Retry,
}

/// The leader's end: waiters receive its value, or learn that it failed.
fn lead<T: CacheValue, E>(
    guard: coalesce::LeaderGuard<'_>,
    loaded: Result<Arc<T>, E>,
) -> Result<Arc<T>, E> {
    match &loaded {
        Ok(value) => guard.finish(FlightState::Loaded(Arc::clone(value) as _)),
        Err(_) => guard.finish(FlightState::Failed),
    }
    loaded
}
