//! L1: typed values in process. A hit is a lookup, an expiry check, a downcast and a clone.
//!
//! The expiry check is one load and a compare: each entry is held with its freshness as a
//! deadline on the coarse clock (see `clock.rs`), and only entries within a second of it, or
//! under a mock clock, read the precise clock.

use std::sync::Arc;

use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter, sync::Cache};

use super::{
    Tier,
    clock::ExpiryClock,
    entry::{AnyValue, Found, Held, L1Entry, Lookup},
    key::with_key,
    near::{Epochs, Near, NearKey},
    quick::{CountEvictions, remove_counting, shrink_counting},
    stamp::{Age, Stamp},
    stats::{Counters, Event},
};
use crate::striped::ThreadStripe;

/// What `cache_size_bytes{tier="l1"}` counts per L1 entry: L1 counts entries, not bytes, and
/// cannot see the size of the typed values it points to. The figure is the map's slot (the
/// key's pointer, the entry with its expiry, quick_cache's bookkeeping) and 128 bytes for
/// the key's text and a small value; larger values make the gauge an underestimate.
pub const L1_ENTRY_BYTES_ESTIMATE: u64 =
    (std::mem::size_of::<(Box<str>, Held)>() + 16 + 128) as u64;

/// Counts L1's evictions and tells the near caches of them.
#[derive(Clone)]
pub(crate) struct L1Lifecycle {
    evictions: CountEvictions,
    epochs: Arc<Epochs>,
}

impl Lifecycle<Box<str>, Held> for L1Lifecycle {
    type RequestState = ();

    fn on_evict(&self, state: &mut (), key: Box<str>, held: Held) {
        self.epochs.changed(&key);
        self.evictions.on_evict(state, key, held);
    }
}

/// Every change to the map is followed by an [`Epochs`] bump for the keys it touched, which
/// is what keeps the per-thread near caches ([`Near`]) coherent.
pub(crate) struct L1 {
    map: Cache<Box<str>, Held, UnitWeighter, DefaultHashBuilder, L1Lifecycle>,
    epochs: Arc<Epochs>,
    near: Near,
}

/// Which entries a read serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// Within their TTL.
    Live,
    /// Before their refresh point.
    Fresh,
}

impl L1 {
    pub(crate) fn new(max_entries: u64, counters: Arc<Counters>) -> Self {
        let epochs = Arc::new(Epochs::new());
        let lifecycle = L1Lifecycle {
            evictions: CountEvictions {
                counters,
                tier: Tier::L1,
            },
            epochs: Arc::clone(&epochs),
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
            near: Near::new(Arc::clone(&epochs), max_entries),
            epochs,
        }
    }

    /// The live value at `key`, if it has type `T`. An entry past every deadline is removed
    /// and counted; a stale one (fail-safe) is a miss here and stays.
    #[inline]
    pub(crate) fn get<T: Send + Sync + 'static>(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
    ) -> Lookup<Arc<T>> {
        let Some(value) = self.live_value(key, clock, counters, Wanted::Live) else {
            return Lookup::Miss;
        };
        // The entry's own reference becomes the caller's: no second reference-count update.
        match value.downcast::<T>() {
            Ok(value) => Lookup::Hit(value),
            Err(_) => Lookup::WrongType,
        }
    }

    /// [`get`](Self::get) for the fast paths in front of a load, which leave a value due for
    /// refresh to the load (that starts the refresh).
    #[inline]
    pub(crate) fn get_fresh<T: Send + Sync + 'static>(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
    ) -> Lookup<Arc<T>> {
        let Some(value) = self.live_value(key, clock, counters, Wanted::Fresh) else {
            return Lookup::Miss;
        };
        match value.downcast::<T>() {
            Ok(value) => Lookup::Hit(value),
            Err(_) => Lookup::WrongType,
        }
    }

    /// The value at `key` in any age, for a load: a stale value can stand in for a failed
    /// reload.
    pub(crate) fn find<T: Send + Sync + 'static>(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
    ) -> Lookup<Found<Arc<T>>> {
        let Some(Held { entry, .. }) = self.map.get(key) else {
            return Lookup::Miss;
        };
        let Some(age) = entry.stamp.age(clock) else {
            self.remove_expired(key, clock, counters);
            return Lookup::Miss;
        };
        match entry.value.downcast::<T>() {
            Ok(value) => Lookup::Hit(Found {
                value,
                age,
                stamp: entry.stamp,
            }),
            Err(_) => Lookup::WrongType,
        }
    }

    /// Stores `value` (a stale or current value kept after a failed load) with a new
    /// lifetime, unless another live value was stored meanwhile.
    pub(crate) fn rearm(&self, key: &str, value: AnyValue, stamp: Stamp, clock: &ExpiryClock) {
        if let Some(Held { entry, .. }) = self.map.get(key)
            && !Arc::ptr_eq(&entry.value, &value)
            && entry.stamp.age(clock).is_some_and(Age::is_live)
        {
            return;
        }
        self.store(key, L1Entry { value, stamp }, clock);
    }

    /// A copy of this thread's near copy of a value of type `T`, if it is current (see
    /// [`near`](super::near)); `None` sends the caller to
    /// [`get_cloned_remembered`](Self::get_cloned_remembered).
    /// `write_l1_key` writes the entry's L1 key, for the reads that keep it hot in L1.
    #[inline(always)]
    pub(crate) fn get_cloned_near<T: Clone + Send + Sync + 'static>(
        &self,
        stripe: ThreadStripe,
        key: NearKey<'_>,
        clock: &ExpiryClock,
        write_l1_key: impl FnOnce(&mut String),
    ) -> Option<T> {
        let touch = || with_key(write_l1_key, |l1_key| drop(self.map.get(l1_key)));
        self.near.lookup(stripe, key, clock, touch)
    }

    /// A copy of the live value at `l1_key`, if it has type `T`, kept in this thread's near
    /// cache under `near_key`.
    pub(crate) fn get_cloned_remembered<T: Clone + Send + Sync + 'static>(
        &self,
        near_key: NearKey<'_>,
        l1_key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
    ) -> Lookup<T> {
        self.near.fill::<T>(near_key, l1_key, || {
            self.live_held(l1_key, clock, counters, Wanted::Fresh)
        })
    }

    /// The value of the entry at `key`, if it is served: fresh by the coarse clock, or else
    /// as [`past_coarse_deadline`](Self::past_coarse_deadline) decides.
    #[inline(always)]
    fn live_value(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
        wanted: Wanted,
    ) -> Option<AnyValue> {
        // A hit reads the value and the coarse deadline and nothing else of the entry.
        let Held {
            entry: L1Entry { value, .. },
            fresh_coarse,
        } = self.map.get(key)?;
        if clock.before_coarse_deadline(fresh_coarse) {
            return Some(value);
        }
        drop(value);
        self.live_value_past_coarse_deadline(key, clock, counters, wanted)
    }

    /// [`live_value`](Self::live_value) for an entry the coarse clock cannot vouch for,
    /// read again whole (a later value stored meanwhile is as good an answer). Its stamp is
    /// read only here: kept for this call on the hit path, the entry was moved in 16-byte
    /// pieces across the map's 8- and 16-byte writes, which stalls the processor's store
    /// forwarding (a hot hit took 1-2 ns longer, `benches/cache.rs`). The second lookup is
    /// made only within the coarse clock's guard of a deadline, or under a mock clock.
    #[cold]
    #[inline(never)]
    fn live_value_past_coarse_deadline(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
        wanted: Wanted,
    ) -> Option<AnyValue> {
        self.live_held(key, clock, counters, wanted)
            .map(|held| held.entry.value)
    }

    /// [`live_value`](Self::live_value)'s entry whole, with the coarse deadline it was
    /// checked against.
    #[inline]
    fn live_held(
        &self,
        key: &str,
        clock: &ExpiryClock,
        counters: &Counters,
        wanted: Wanted,
    ) -> Option<Held> {
        let held = self.map.get(key)?;
        if clock.before_coarse_deadline(held.fresh_coarse) {
            return Some(held);
        }
        let fresh_coarse = held.fresh_coarse;
        self.past_coarse_deadline(key, held.entry, clock, counters, wanted)
            .map(|entry| Held {
                entry,
                fresh_coarse,
            })
    }

    /// An entry the coarse clock cannot vouch for: fresh if the precise clock says so; past
    /// its freshness, live until its expiry (for `get`, not the fast paths), kept but not
    /// served while stale, and removed after.
    #[cold]
    fn past_coarse_deadline(
        &self,
        key: &str,
        entry: L1Entry,
        clock: &ExpiryClock,
        counters: &Counters,
        wanted: Wanted,
    ) -> Option<L1Entry> {
        match entry.stamp.age(clock) {
            Some(Age::Fresh) => Some(entry),
            Some(age) if age.is_live() && wanted == Wanted::Live => Some(entry),
            Some(_) => None,
            None => {
                self.remove_expired(key, clock, counters);
                None
            }
        }
    }

    fn remove_expired(&self, key: &str, clock: &ExpiryClock, counters: &Counters) {
        // Only if still expired: another thread may have stored a fresh value meanwhile.
        if self
            .map
            .remove_if(key, |held| !held.entry.stamp.is_kept(clock))
            .is_some()
        {
            self.epochs.changed(key);
            counters.record(Tier::L1, Event::Expiration);
        }
    }

    /// Stores `entry`; hits check its freshness against `clock`'s coarse time.
    pub(crate) fn store(&self, key: &str, entry: L1Entry, clock: &ExpiryClock) {
        let fresh_coarse = clock.coarse_deadline(entry.stamp.fresh_until);
        let held = Held {
            entry,
            fresh_coarse,
        };
        self.map.insert(key.into(), held);
        self.epochs.changed(key);
    }

    /// Removes the entry at `key` if it still holds `value`.
    pub(crate) fn remove_value(&self, key: &str, value: &AnyValue) {
        if self
            .map
            .remove_if(key, |held| Arc::ptr_eq(&held.entry.value, value))
            .is_some()
        {
            self.epochs.changed(key);
        }
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        let removed = self.map.remove(key).is_some();
        self.epochs.changed(key);
        removed
    }

    /// Removes entries for which `remove` holds; returns how many.
    pub(crate) fn remove_where(&self, remove: impl Fn(&str, &L1Entry) -> bool) -> u64 {
        // The bump comes before quick_cache drops the entry, but under the shard's write lock:
        // a reader that sees it then waits for that lock, and finds the entry gone.
        remove_counting(&self.map, |key, held| {
            let gone = remove(key, &held.entry);
            if gone {
                self.epochs.changed(key);
            }
            gone
        })
    }

    /// Removes every entry; returns about how many (entries inserted meanwhile may count).
    pub(crate) fn clear(&self) -> u64 {
        let held = self.len();
        self.map.clear();
        self.epochs.all_changed();
        self.near.release();
        held
    }

    /// How many near slots this thread has.
    #[cfg(test)]
    pub(crate) fn near_slots(&self) -> usize {
        self.near.thread_slots()
    }

    /// Whether `key` is held, without making it look used.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Evicts about `fraction` of the entries (by the eviction policy); returns how many went.
    pub(crate) fn shrink(&self, fraction: f64) -> u64 {
        // Near copies would keep the evicted values alive: memory is what the shrink is for.
        self.near.release();
        shrink_counting(&self.map, fraction)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// With the real clock a hit far from its deadline is vouched for by the coarse clock;
    /// one within its guard, or past it, is decided by the precise clock: the entry past its
    /// freshness is a miss, removed and counted.
    #[test]
    fn a_hit_checked_by_the_coarse_clock_ends_with_the_ttl() {
        let clock = ExpiryClock::real();
        let counters = Counters::default();
        let l1 = L1::new(10, Arc::new(Counters::default()));
        let stamp = |until| Stamp {
            fresh_until: until,
            expires_at: until,
            stale_until: until,
            shared: false,
        };
        let store = |key: &str, until| {
            let value: AnyValue = Arc::new(7u32);
            l1.store(
                key,
                L1Entry {
                    value,
                    stamp: stamp(until),
                },
                &clock,
            );
        };
        let now = clock.now();
        store("far", now + Duration::from_secs(3600));
        store("near", now + Duration::from_millis(500));
        store("past", now - Duration::from_millis(1));
        for key in ["far", "near"] {
            assert!(matches!(l1.get::<u32>(key, &clock, &counters), Lookup::Hit(v) if *v == 7));
        }
        assert!(matches!(
            l1.get::<u32>("past", &clock, &counters),
            Lookup::Miss
        ));
        assert!(!l1.contains("past"), "the expired entry is removed");
        assert_eq!(counters.count(Tier::L1, Event::Expiration), 1);
    }
}
