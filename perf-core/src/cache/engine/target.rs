//! Where a load reads and stores: every tier down to one (values with serde), or L1 alone
//! (values without).

use std::{future::Future, sync::Arc};

use super::{Engine, WritePlan};
use crate::Error;
use crate::cache::{
    CacheValue, SharedValue, Tier,
    entry::{Found, Lookup},
    stamp::Stamp,
    stats::{Event, Op},
};

/// The reads of a load: values in any age, stale ones included.
impl Engine {
    /// The remote tier's value at `key` in any age, when `tier` is the remote tier; for a load.
    pub(super) async fn remote_find_at<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
        op: Op,
    ) -> Option<Found<Arc<T>>> {
        match &self.remote {
            // Boxed: the remote path's state (decoded values, its own futures) would otherwise
            // sit in every `get` future.
            Some(remote) if tier == Tier::Redis => {
                Box::pin(self.remote_find(remote.as_ref(), key, op)).await
            }
            _ => None,
        }
    }

    /// The local tiers' value for a load, in any age: a live one from the first tier that has
    /// it, else a stale one, which a failed reload may fall back on.
    pub(super) fn local_find<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
        op: Op,
    ) -> Option<Found<Arc<T>>> {
        let stale = match self.l1_find::<T>(key, op) {
            Some(found) if found.age.is_live() => return Some(found),
            other => other,
        };
        if tier == Tier::L1 {
            return stale;
        }
        match self.l2_find::<T>(key, op) {
            Some(found) if found.age.is_live() => Some(found),
            other => stale.or(other),
        }
    }

    /// L1's value for a load, in any age; a stale one counts as a miss.
    pub(super) fn l1_find<T: CacheValue>(&self, key: &str, op: Op) -> Option<Found<Arc<T>>> {
        let counters = &self.counters;
        let found = match self.l1.find::<T>(key, &self.clock, counters) {
            Lookup::Hit(found) => Some(found),
            Lookup::WrongType => {
                counters.record(Tier::L1, Event::TypeMismatch);
                None
            }
            Lookup::Miss => None,
        };
        match &found {
            Some(found) if found.age.is_live() => counters.record(Tier::L1, Event::Hit(op)),
            _ => counters.record(Tier::L1, Event::Miss(op)),
        }
        found
    }
}

/// Where a load reads and stores: every tier down to one (values with serde), or L1 alone.
pub(crate) trait Target<T: CacheValue>: Copy + Send + Sync + 'static {
    /// The local tiers' value, in any age.
    fn find_local(&self, cache: &Engine, key: &str) -> Option<Found<Arc<T>>>;

    /// The remote tier's value, when this target reaches it.
    fn find_remote(
        &self,
        cache: &Engine,
        key: &str,
    ) -> impl Future<Output = Option<Found<Arc<T>>>> + Send;

    /// Stores a loaded value; failures are logged, never the caller's.
    fn store(
        &self,
        cache: &Engine,
        key: &str,
        value: Arc<T>,
        plan: &WritePlan,
    ) -> impl Future<Output = ()> + Send;

    /// [`store`](Self::store) in the local tiers only, for synchronous loads.
    fn store_local(&self, cache: &Engine, key: &str, value: Arc<T>, plan: &WritePlan);

    /// Gives a stale value a new lifetime in the local tiers.
    fn rearm(&self, cache: &Engine, key: &str, value: &Arc<T>, stamp: Stamp) {
        cache
            .l1
            .rearm(key, Arc::clone(value) as _, stamp, &cache.clock);
    }
}

/// Every tier down to this one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllTiers(pub(crate) Tier);

impl<T: SharedValue> Target<T> for AllTiers {
    fn find_local(&self, cache: &Engine, key: &str) -> Option<Found<Arc<T>>> {
        cache.local_find(key, self.0, Op::GetOrLoad)
    }

    async fn find_remote(&self, cache: &Engine, key: &str) -> Option<Found<Arc<T>>> {
        cache.remote_find_at(key, self.0, Op::GetOrLoad).await
    }

    async fn store(&self, cache: &Engine, key: &str, value: Arc<T>, plan: &WritePlan) {
        match cache.store(key, value, self.0, plan).await {
            Ok(()) => {}
            // The remote tier reports its own outages; one line per call would flood.
            Err(error @ (Error::Remote(_) | Error::RemoteQueued(_))) => {
                tracing::debug!(key, %error, "loaded value not stored remotely");
            }
            Err(error) => tracing::warn!(key, %error, "loaded value not cached"),
        }
    }

    fn store_local(&self, cache: &Engine, key: &str, value: Arc<T>, plan: &WritePlan) {
        if let Err(error) = cache.store_local(key, value, self.0.min(Tier::L2), plan) {
            tracing::warn!(key, %error, "loaded value not cached");
        }
    }

    fn rearm(&self, cache: &Engine, key: &str, value: &Arc<T>, stamp: Stamp) {
        cache
            .l1
            .rearm(key, Arc::clone(value) as _, stamp, &cache.clock);
        if self.0 >= Tier::L2 {
            cache.l2.restamp(key, stamp);
        }
    }
}

/// L1 alone, for values without serde.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L1Only;

impl<T: CacheValue> Target<T> for L1Only {
    fn find_local(&self, cache: &Engine, key: &str) -> Option<Found<Arc<T>>> {
        cache.l1_find(key, Op::GetOrLoad)
    }

    async fn find_remote(&self, _: &Engine, _: &str) -> Option<Found<Arc<T>>> {
        None
    }

    async fn store(&self, cache: &Engine, key: &str, value: Arc<T>, plan: &WritePlan) {
        self.store_local(cache, key, value, plan);
    }

    fn store_local(&self, cache: &Engine, key: &str, value: Arc<T>, plan: &WritePlan) {
        cache.insert_l1_only(key, value, plan.stamp);
    }
}
