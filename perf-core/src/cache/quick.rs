//! Helpers over quick_cache's maps that both local tiers use.

use std::sync::Arc;

use quick_cache::{DefaultHashBuilder, Lifecycle, sync::Cache};

use super::{
    Tier,
    stats::{Counters, Event},
};

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

/// Evicts entries of `map` until its weight is `1 - fraction` of what it was, then restores
/// its capacity; returns how many entries went. Evictions are the usual ones: counted, and
/// told to the lifecycle.
pub(crate) fn shrink_counting<V, We, L>(
    map: &Cache<Box<str>, V, We, DefaultHashBuilder, L>,
    fraction: f64,
) -> u64
where
    V: Clone,
    We: quick_cache::Weighter<Box<str>, V> + Clone,
    L: Lifecycle<Box<str>, V> + Clone,
{
    let (entries, weight, capacity) = (map.len(), map.weight(), map.capacity());
    let target = (weight as f64 * (1.0 - fraction.clamp(0.0, 1.0))) as u64;
    if target >= weight {
        return 0;
    }
    // Inserts meanwhile see the lower capacity for as long as the eviction takes.
    map.set_capacity(target.max(1));
    map.set_capacity(capacity);
    entries.saturating_sub(map.len()) as u64
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
