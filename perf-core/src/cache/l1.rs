//! L1: typed values in process. A hit is a lookup, an expiry check, a downcast and a clone.

use std::{any::Any, sync::Arc};

use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter, sync::Cache};

use super::Tier;
use super::clock::ExpiryClock;
use super::stats::{Counters, Event};

pub(crate) type AnyValue = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) struct L1Entry {
    pub(crate) value: AnyValue,
    pub(crate) expires_at: quanta::Instant,
    /// A copy of a remote-tier value, dropped when remote invalidations may have been missed.
    pub(crate) shared: bool,
}

/// Counts evictions into the cache's counters.
#[derive(Clone)]
pub(crate) struct CountEvictions {
    pub(crate) counters: Arc<Counters>,
    pub(crate) tier: Tier,
}

impl<K, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: K, _: V) {
        self.counters.record(self.tier, Event::Eviction);
    }
}

pub(crate) struct L1 {
    map: Cache<Box<str>, L1Entry, UnitWeighter, DefaultHashBuilder, CountEvictions>,
}

/// What an L1 lookup found.
pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    /// There is a live entry, but of another type.
    WrongType,
}

impl L1 {
    pub(crate) fn new(max_entries: u64, counters: Arc<Counters>) -> Self {
        let lifecycle = CountEvictions {
            counters,
            tier: Tier::L1,
        };
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            map: Cache::with(
                capacity,
                max_entries,
                UnitWeighter,
                DefaultHashBuilder::default(),
                lifecycle,
            ),
        }
    }

    /// The live value at `key`, if it has type `T`. An expired entry is removed and counted.
    #[inline]
    pub(crate) fn get<T: Send + Sync + 'static>(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
    ) -> Lookup<Arc<T>> {
        let Some(entry) = self.map.get(key) else {
            return Lookup::Miss;
        };
        if !clock.is_live(entry.expires_at) {
            self.remove_expired(key, clock, counters);
            return Lookup::Miss;
        }
        // The entry's own reference becomes the caller's: no second reference-count update.
        match entry.value.downcast::<T>() {
            Ok(value) => Lookup::Hit(value),
            Err(_) => Lookup::WrongType,
        }
    }

    fn remove_expired(&self, key: &str, clock: &ExpiryClock, counters: &Counters) {
        // Only if still expired: another thread may have stored a fresh value meanwhile.
        if self
            .map
            .remove_if(key, |e| !clock.is_live(e.expires_at))
            .is_some()
        {
            counters.record(Tier::L1, Event::Expiration);
        }
    }

    pub(crate) fn insert(&self, key: &str, entry: L1Entry) {
        self.map.insert(key.into(), entry);
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    /// Removes entries for which `keep` is false; returns how many.
    pub(crate) fn remove_where(&self, remove: impl Fn(&str, &L1Entry) -> bool) -> u64 {
        remove_counting(&self.map, remove)
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }
}

/// Removes the entries of `map` for which `remove` holds; returns how many.
pub(crate) fn remove_counting<V, We, L>(
    map: &Cache<Box<str>, V, We, DefaultHashBuilder, L>,
    remove: impl Fn(&str, &V) -> bool,
) -> u64
where
    V: Clone,
    We: quick_cache::Weighter<Box<str>, V> + Clone,
    L: Lifecycle<Box<str>, V> + Clone,
{
    let removed = std::cell::Cell::new(0);
    map.retain(|key, entry| {
        let gone = remove(key, entry);
        removed.set(removed.get() + u64::from(gone));
        !gone
    });
    removed.get()
}
