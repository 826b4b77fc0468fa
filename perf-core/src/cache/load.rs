//! `get_or_load`: read through the tiers, else run one loader per key and store its value.

use std::{future::Future, sync::Arc, time::Duration};

use super::{
    CacheValue, MultiLevelCache, SharedValue, Tier,
    coalesce::{self, FlightState, Outcome, Role},
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
        let shown: String = key.chars().take(64).collect();
        tracing::warn!(key = %shown, %error, "value not cacheable; loading uncached");
        self.inner.counters.record(Tier::L1, Event::Refused);
        self.run_loader(loader).await.map(Arc::new)
    }

    async fn run_loader<T, E, F, Fut>(&self, loader: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.counters.record_load(LoadEvent::Run);
        let result = loader().await;
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
            match self.inner.flights.join(key) {
                Role::Leader(guard) => {
                    // A leader that finished between our miss and our join has stored its value.
                    if let Lookup::Hit(value) =
                        self.inner
                            .l1
                            .get::<T>(key, &self.inner.clock, &self.inner.counters)
                    {
                        return Ok(value);
                    }
                    return match self.run_loader(loader).await {
                        Ok(value) => {
                            let value = Arc::new(value);
                            store(Arc::clone(&value)).await;
                            guard.finish(FlightState::Loaded(value.clone()));
                            Ok(value)
                        }
                        Err(error) => {
                            guard.finish(FlightState::Failed);
                            Err(error)
                        }
                    };
                }
                Role::Waiter(receiver) => match coalesce::wait(receiver).await {
                    Outcome::Loaded(shared) => match shared.downcast::<T>() {
                        Ok(value) => {
                            self.inner.counters.record_load(LoadEvent::Coalesced);
                            return Ok(value);
                        }
                        Err(_) => break,
                    },
                    Outcome::Failed => break,
                    Outcome::Abandoned => continue,
                },
            }
        }
        // The leader failed, or loaded another type under this key: load for ourselves.
        let value = Arc::new(self.run_loader(loader).await?);
        store(Arc::clone(&value)).await;
        Ok(value)
    }
}
