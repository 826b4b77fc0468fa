//! A per-thread near cache in front of L1, for `#[cache_result]` hits.
//!
//! A read of the shared L1 builds the string key, hashes it, takes a shard's lock and bumps
//! the value's reference count; on two threads reading the same keys those cache lines move
//! between cores on every call. Each thread keeps its recent L1 hits here under a cheaper key
//! (the call site and the encoded arguments, before they are made into a string), and serves
//! a repeat without writing shared memory. The tables are the cache's own, one a thread
//! (through [`PerThread`]), and go when the cache does. A thread without a table of its own
//! (past the 63 that get one, or one whose locals are being destroyed) reads L1.
//!
//! Coherence comes from [`Epochs`]: counters over buckets of L1 keys that every L1 insert,
//! removal and eviction of a key bumps after the change. A slot remembers its bucket's count
//! read *before* the value was read from L1, and serves only while the count is unchanged, so
//! a write, `delete`, `invalidate_prefix`, `clear` or remote invalidation that has returned is
//! never answered from here with the value it replaced. Expiry is checked as in L1.
//!
//! A thread's table is a hash map per call site and type of value ([`TypedSlots`], from
//! hashbrown), keyed by the arguments' fingerprint, each slot holding its own copy of the
//! value: a hit hashes the fingerprint, reads a control group and one slot, and copies the
//! value, as a memoizer that keeps its values in a map does. Fingerprints of up to 16 bytes
//! (a number or two, a short string) are keyed by those two words in a map of their own, so
//! that a slot holding a `String` is one 64-byte line's worth rather than 88 bytes. Arguments
//! past a fingerprint (a string of 40 to 250 bytes) are keyed by a copy of their wide print on
//! the heap: the print is written and compared in memory, which still beats writing the L1
//! key, whose bytes go out in hex. (With a table shared by every site, its values
//! type-erased behind L1's `Arc`s in sets of six ways, a hit read a set's index, a slot's
//! line, the `Arc` and only then the value: 10k-key hits took 1.56-1.65x `cached`'s speed
//! where these take 1.85-2.03x, and 100k-key ones
//! 0.84-1.01x against 1.57-1.90x, `hit_sweep`.) The maps grow with the thread's working set,
//! up to as many slots in all as L1 has entries (at most [`MAX_SLOTS`]); a fill of a new key
//! past that starts the thread's table afresh.
//!
//! The copies are the price: a thread holds a copy of each value in its working set, as
//! every hit hands its caller one (a function whose values are large returns them in an
//! `Arc`, as with any memoizer that clones on a hit, and then the copies share them). A
//! slot keeps its copy until it is reused or its table starts afresh, even after L1 dropped
//! the value. When L1 sheds entries for memory (a shrink) or is cleared, every thread drops
//! its table at its next read ([`Near::release`]), so the memory really goes.
//!
//! quick_cache learns which entries are hot from its own reads, so every [`TOUCH_EVERY`]th
//! near hit of a slot also reads L1; a key is not evicted for being served from here.
//!
//! A hit inlines whole into its caller, and the copy of the value is its last step. Behind
//! `std`'s `thread_local!` (whose `with` was not inlined here), or with work after it, the
//! copy moved through memory in pieces of other sizes than it was written in, which stalls
//! the processor's store forwarding: a hit took 70-77 ns instead of 41 (`benches/macros.rs`).
//! A thread's table stays with the cache when the thread ends, for a later thread to reuse.

use std::{
    any::{Any, TypeId},
    cell::RefCell,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use hashbrown::hash_table::Entry;

use crate::{
    striped::{PerThread, ThreadStripe},
    sync::AtomicU64,
};

use super::{
    clock::ExpiryClock,
    entry::{Held, Lookup},
    fingerprint::Fingerprint,
};

/// The most slots a thread's table holds, whatever L1's capacity. A slot holding a `String`
/// takes 64 bytes (88 for a long key) and the table's spare room, and its copy's own heap
/// memory; a wide key's words, up to 256 bytes, are on the heap too.
pub(crate) const MAX_SLOTS: usize = 196_608;
/// One near hit of a slot in this many also reads L1, keeping the entry hot there. Such a
/// read builds the string key and looks it up, hundreds of ns past the processor's cache:
/// one in 64 cost 1k- and 10k-key hits 7-10% (`hit_sweep`, three alternating runs), one in
/// 256 still 2-3% of the samples of a 10k-key hit, and the Zipf trace's hit ratio is the same
/// at all three (0.789).
const TOUCH_EVERY: u16 = 1024;
/// Buckets of [`Epochs`]: enough that unrelated writes rarely share one, few enough that
/// the counters stay in the processor's cache.
const BUCKETS: usize = 2048;
const _: () = assert!(BUCKETS.is_power_of_two() && BUCKETS <= 1 << LOW_BITS);
/// The low bits of a slot's word that hold a small field next to a 48-bit one.
const LOW_BITS: u32 = 16;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;

/// How many types of value one site's slots hold on a thread: a generic function's
/// instances share their site, and those past the first few are read from L1.
const SITE_TYPES: usize = 4;

/// Numbers the sites in the order of their first fill: a thread's table finds a site's maps
/// at its number.
static SITES: AtomicUsize = AtomicUsize::new(0);

/// A call site: its number in near tables, given on its first fill.
#[derive(Debug, Default)]
pub(crate) struct NearSite {
    number: OnceLock<usize>,
}

impl NearSite {
    pub(crate) const fn new() -> Self {
        Self {
            number: OnceLock::new(),
        }
    }

    /// The site's number, if it has had one.
    #[inline(always)]
    fn number(&self) -> Option<usize> {
        self.number.get().copied()
    }

    /// The site's number, given now if it has none.
    fn numbered(&self) -> usize {
        *self
            .number
            .get_or_init(|| SITES.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a near slot is keyed by: a call site and its arguments' fingerprint (or the
/// fingerprint of the whole L1 key, for a site whose keys are written whole).
#[derive(Clone, Copy)]
pub(crate) struct NearKey<'a> {
    pub(crate) site: &'static NearSite,
    pub(crate) print: NearPrint<'a>,
}

/// A fingerprint as the slots are keyed by it, each kind in a map of its own.
#[derive(Clone, Copy)]
pub(crate) enum NearPrint<'a> {
    /// A [`Fingerprint`] of at most 16 bytes: its two words.
    Short([u64; 2]),
    /// A longer [`Fingerprint`].
    Long(&'a Fingerprint),
    /// A [`WidePrint`](super::fingerprint::WidePrint): the words written.
    Wide(&'a [u64]),
}

impl<'a> NearPrint<'a> {
    #[inline(always)]
    pub(crate) fn of(print: &'a Fingerprint) -> Self {
        match print.short() {
            Some(short) => Self::Short(short),
            None => Self::Long(print),
        }
    }
}

/// Change counters over buckets of L1 keys. See the module documentation.
pub(crate) struct Epochs {
    buckets: Box<[AtomicU64]>,
}

impl Epochs {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket_of(key: &str) -> usize {
        (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % BUCKETS as u64) as usize
    }

    #[inline(always)]
    fn count(&self, bucket: usize) -> u64 {
        self.buckets[bucket & (BUCKETS - 1)].load(Ordering::Acquire)
    }

    /// Called after L1's entry at `key` changed.
    pub(crate) fn changed(&self, key: &str) {
        self.buckets[Self::bucket_of(key)].fetch_add(1, Ordering::Release);
    }

    /// Called after L1 changed wholesale (a clear).
    pub(crate) fn all_changed(&self) {
        for bucket in &*self.buckets {
            bucket.fetch_add(1, Ordering::Release);
        }
    }

    /// A bucket and its count now, as a [`Slot`] keeps them: the count's low 48 bits above
    /// the bucket (a slot is stale only if its bucket changed a multiple of 2^48 times since,
    /// unread).
    fn stamp(&self, bucket: usize) -> u64 {
        self.count(bucket) << LOW_BITS | bucket as u64
    }

    /// Whether a [`stamp`](Self::stamp)'s bucket is unchanged since.
    #[inline(always)]
    fn unchanged(&self, stamp: u64) -> bool {
        self.count((stamp & LOW_MASK) as usize) << LOW_BITS == stamp & !LOW_MASK
    }
}

/// A thread's copy of one L1 value, under `K`: a fingerprint's two words for short ones,
/// the whole [`Fingerprint`] for the rest. What a hit checks comes first, beside the key, so
/// that it shares the key's first line, and the value it copies last.
#[repr(C)]
struct Slot<T, K> {
    /// The bucket and its change count, from [`Epochs::stamp`].
    epoch: u64,
    /// The entry's coarse deadline (`ExpiryClock::coarse_deadline`) with its low 16 bits
    /// cleared, so never later than the entry's; in them, the slot's near hits (counted
    /// modulo 2^16).
    deadline_hits: u64,
    key: K,
    /// The precise expiry, read when the coarse clock is too close to tell.
    expires_at: quanta::Instant,
    value: T,
}

const _: () = assert!((LOW_MASK + 1).is_multiple_of(TOUCH_EVERY as u64));

impl<T, K> Slot<T, K> {
    #[inline(always)]
    fn coarse_deadline(&self) -> u64 {
        self.deadline_hits & !LOW_MASK
    }

    /// Counts a near hit; true on every [`TOUCH_EVERY`]th.
    #[inline(always)]
    fn count_hit(&mut self) -> bool {
        let hits = self.deadline_hits.wrapping_add(1) & LOW_MASK;
        self.deadline_hits = self.deadline_hits & !LOW_MASK | hits;
        hits.is_multiple_of(u64::from(TOUCH_EVERY))
    }

    /// Whether the slot still holds L1's current, live value.
    #[inline(always)]
    fn is_current(&self, epochs: &Epochs, clock: &ExpiryClock) -> bool {
        epochs.unchanged(self.epoch)
            && (clock.before_coarse_deadline(self.coarse_deadline())
                || clock.is_live(self.expires_at))
    }

    /// Takes `slot`'s contents, keeping its own key: returns the value it held.
    fn refill(&mut self, slot: Slot<T, ()>) -> T {
        self.epoch = slot.epoch;
        self.deadline_hits = slot.deadline_hits;
        self.expires_at = slot.expires_at;
        std::mem::replace(&mut self.value, slot.value)
    }

    /// The same slot under another key.
    fn keyed<K2>(self, key: K2) -> Slot<T, K2> {
        let Self {
            epoch,
            deadline_hits,
            expires_at,
            value,
            ..
        } = self;
        Slot {
            epoch,
            deadline_hits,
            key,
            expires_at,
            value,
        }
    }
}

/// One site's slots for values of one type, on one thread, found by their key's hash.
type Slots<T, K> = hashbrown::HashTable<Slot<T, K>>;

/// What a slot is keyed by: a print's words, the two of a short [`Fingerprint`], a longer
/// one's, or a wide print's (kept on the heap).
trait SlotKey {
    fn key_words(&self) -> &[u64];

    /// Inlined whole, reading a fixed-length key's words from registers: a map's own lookup
    /// was left out of line, and read them back from memory.
    #[inline(always)]
    fn hashed(&self) -> u64 {
        hash_words(self.key_words())
    }
}

impl SlotKey for [u64; 2] {
    #[inline(always)]
    fn key_words(&self) -> &[u64] {
        self
    }
}

impl SlotKey for Fingerprint {
    #[inline(always)]
    fn key_words(&self) -> &[u64] {
        self.words()
    }
}

impl SlotKey for Box<[u64]> {
    #[inline(always)]
    fn key_words(&self) -> &[u64] {
        self
    }
}

/// The hash of a key's words, one kind of key or another: inlined always, so that a key
/// of fixed length is hashed from registers (out of line, as LLVM once chose, its words
/// were read back from memory and a hit took 13 ns longer).
#[inline(always)]
fn hash_words(words: &[u64]) -> u64 {
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
    for &word in words {
        hasher.write_u64(word);
    }
    hasher.finish()
}

/// The slot under `words`.
#[inline]
fn find_wide<'s, T>(
    slots: &'s mut Slots<T, Box<[u64]>>,
    words: &[u64],
) -> Option<&'s mut Slot<T, Box<[u64]>>> {
    slots.find_mut(hash_words(words), |slot| *slot.key == *words)
}

/// The slot under `key`.
#[inline(always)]
fn find<T, K: SlotKey + Copy + Eq>(slots: &mut Slots<T, K>, key: K) -> Option<&mut Slot<T, K>> {
    slots.find_mut(key.hashed(), |slot| slot.key == key)
}

/// Keeps `slot` under the key whose words are `words`, made by `key` if it is new: returns
/// the value it replaced, or `None` if the key is new.
fn keep<T, K: SlotKey>(
    slots: &mut Slots<T, K>,
    words: &[u64],
    slot: Slot<T, ()>,
    key: impl FnOnce() -> K,
) -> Option<T> {
    let is_key = |s: &Slot<T, K>| s.key.key_words() == words;
    match slots.entry(hash_words(words), is_key, |s| s.key.hashed()) {
        Entry::Occupied(mut own) => Some(own.get_mut().refill(slot)),
        Entry::Vacant(free) => {
            free.insert(slot.keyed(key()));
            None
        }
    }
}

/// A site's slots for values of one type on one thread, short keys apart: a 40-byte
/// fingerprint made a slot holding a `String` 88 bytes, two or three cache lines, and most
/// arguments (a number or two) fingerprint in 16 bytes, which makes it 64. Wide prints are
/// kept on the heap, behind a slot of 64 bytes too.
struct TypedSlots<T> {
    short: Slots<T, [u64; 2]>,
    long: Slots<T, Fingerprint>,
    wide: Slots<T, Box<[u64]>>,
}

impl<T> TypedSlots<T> {
    fn new() -> Self {
        Self {
            short: Slots::new(),
            long: Slots::new(),
            wide: Slots::new(),
        }
    }

    /// Whether a slot has `print` for its key.
    fn holds(&mut self, print: NearPrint<'_>) -> bool {
        match print {
            NearPrint::Short(short) => find(&mut self.short, short).is_some(),
            NearPrint::Long(long) => find(&mut self.long, *long).is_some(),
            NearPrint::Wide(words) => find_wide(&mut self.wide, words).is_some(),
        }
    }

    /// Keeps `slot` under `print`: returns the value it replaced, or `None` if the key is
    /// new.
    fn keep(&mut self, slot: Slot<T, ()>, print: NearPrint<'_>) -> Option<T> {
        match print {
            NearPrint::Short(short) => keep(&mut self.short, &short, slot, || short),
            NearPrint::Long(long) => keep(&mut self.long, long.words(), slot, || *long),
            NearPrint::Wide(words) => keep(&mut self.wide, words, slot, || words.into()),
        }
    }
}

/// The [`TypedSlots`] of some type, and that type.
struct AnySlots {
    of: TypeId,
    slots: Box<dyn Any + Send>,
}

/// A site's maps on one thread: up to [`SITE_TYPES`] [`TypedSlots`] of distinct types.
#[derive(Default)]
struct SiteMaps([Option<AnySlots>; SITE_TYPES]);

impl SiteMaps {
    /// The site's slots of `T`s, if it has any. The first type is checked inline and the
    /// others out of line: with the whole loop inlined, 100-key hits measured 1.8x `cached`'s
    /// speed in three runs of three, against 2.0x.
    #[inline(always)]
    fn of<T: 'static>(&mut self) -> Option<&mut TypedSlots<T>> {
        let wanted = TypeId::of::<T>();
        let index = if self.0[0].as_ref().is_some_and(|map| map.of == wanted) {
            0
        } else {
            self.later_index(wanted)?
        };
        let map = self.0.get_mut(index)?.as_mut()?;
        // SAFETY: a map is a `TypedSlots<T>` for the `T` whose `TypeId` it is kept with
        // (`of_or_new` makes each so), and that is `T`'s. `downcast_mut` would check it again,
        // through a virtual call (2% of a 1k-key hit).
        Some(unsafe { &mut *std::ptr::from_mut(&mut *map.slots).cast::<TypedSlots<T>>() })
    }

    #[inline(never)]
    fn later_index(&self, wanted: TypeId) -> Option<usize> {
        self.0
            .iter()
            .position(|map| map.as_ref().is_some_and(|map| map.of == wanted))
    }

    /// The site's slots of `T`s, made if it has none and fewer than [`SITE_TYPES`] types.
    fn of_or_new<T: Send + 'static>(&mut self) -> Option<&mut TypedSlots<T>> {
        if self.of::<T>().is_none() {
            let free = self.0.iter_mut().find(|map| map.is_none())?;
            *free = Some(AnySlots {
                of: TypeId::of::<T>(),
                slots: Box::new(TypedSlots::<T>::new()),
            });
        }
        self.of::<T>()
    }
}

/// One thread's slots: a site's maps at the site's number.
///
/// Aligned to two cache lines: every hit writes its table's borrow flag, which must not share
/// a line (or the adjacent line the processor fetches with it) with another thread's table
/// (2 threads at 10k keys: 73-84 ns a hit, from 200-216).
#[repr(align(128))]
struct Table {
    sites: Vec<SiteMaps>,
    /// Slots in all the maps.
    slots: usize,
    /// The [`Near::releases`] count the table was made under.
    release: u64,
}

/// Under no [`Near::releases`] count: a table not yet made.
const NOT_MADE: u64 = u64::MAX;

impl Default for Table {
    /// A thread's table until its first fill: released, so that the fill makes the table.
    fn default() -> Self {
        Self::new(NOT_MADE)
    }
}

impl Table {
    fn new(release: u64) -> Self {
        Self {
            sites: Vec::new(),
            slots: 0,
            release,
        }
    }

    /// The slots of `site`'s values of type `T`.
    #[inline(always)]
    fn slots<T: 'static>(&mut self, site: &NearSite) -> Option<&mut TypedSlots<T>> {
        self.sites.get_mut(site.number()?)?.of()
    }

    /// Keeps `slot` in `site`'s map for `T`. When the table is full and the slot's key is new
    /// to it, the table starts afresh. Returns what the caller drops outside its borrow (the
    /// value the slot replaced, the table it replaced), and the slot's own value back if the
    /// site keeps no more types.
    fn put<T: Send + 'static>(
        &mut self,
        key: NearKey<'_>,
        slot: Slot<T, ()>,
        max_slots: usize,
    ) -> (Dropped<T>, Option<T>) {
        let (site, print) = (key.site, key.print);
        let mut dropped = Dropped::default();
        if self.slots >= max_slots
            && self
                .slots::<T>(site)
                .is_none_or(|slots| !slots.holds(print))
        {
            dropped.table = Some(std::mem::replace(self, Self::new(self.release)));
        }
        let number = site.numbered();
        if self.sites.len() <= number {
            self.sites.resize_with(number + 1, SiteMaps::default);
        }
        let Some(slots) = self.sites[number].of_or_new::<T>() else {
            return (dropped, Some(slot.value));
        };
        dropped.value = slots.keep(slot, print);
        self.slots += usize::from(dropped.value.is_none());
        (dropped, None)
    }
}

/// What a fill took out of a table, dropped once the table is no longer borrowed: a value's
/// `Drop` may read a cached function.
struct Dropped<T> {
    value: Option<T>,
    table: Option<Table>,
}

impl<T> Default for Dropped<T> {
    fn default() -> Self {
        Self {
            value: None,
            table: None,
        }
    }
}

/// One cache's near tables, a table a thread, and the change counters they are checked
/// against.
pub(crate) struct Near {
    epochs: Arc<Epochs>,
    /// The most slots a thread's table holds.
    max_slots: usize,
    tables: PerThread<RefCell<Table>>,
    /// Bumped to have every thread drop its table at its next read ([`Near::release`]).
    releases: AtomicU64,
}

impl Near {
    /// Near tables for an L1 of `l1_capacity` entries: a table holds as many slots as L1 has
    /// entries, and at most [`MAX_SLOTS`].
    pub(crate) fn new(epochs: Arc<Epochs>, l1_capacity: u64) -> Self {
        Self {
            epochs,
            max_slots: usize::try_from(l1_capacity)
                .unwrap_or(usize::MAX)
                .clamp(1, MAX_SLOTS),
            tables: PerThread::default(),
            releases: AtomicU64::new(0),
        }
    }

    /// Has every thread drop its table, and the copies it holds, at its next read: when L1
    /// lets values go (a shrink under memory pressure, a clear), the threads' copies of them
    /// go too.
    pub(crate) fn release(&self) {
        self.releases.fetch_add(1, Ordering::Release);
    }

    /// How many slots this thread's table holds.
    #[cfg(test)]
    pub(crate) fn thread_slots(&self) -> usize {
        self.tables.mine().map_or(0, |table| table.borrow().slots)
    }

    /// A copy of this thread's copy of the value at `key`, if it has one that is a live `T`
    /// unchanged in L1. Every [`TOUCH_EVERY`]th near hit of a slot also `touch`es L1's entry.
    #[inline(always)]
    pub(crate) fn lookup<T: Clone + 'static>(
        &self,
        stripe: ThreadStripe,
        key: NearKey<'_>,
        clock: &ExpiryClock,
        touch: impl FnOnce(),
    ) -> Option<T> {
        // Re-entered (a value's Clone or Drop calling a cached function): not from here.
        let mut table = self.tables.mine_on(stripe)?.try_borrow_mut().ok()?;
        if table.release != self.releases.load(Ordering::Relaxed) {
            return None;
        }
        let slots = table.slots::<T>(key.site)?;
        match key.print {
            NearPrint::Short(short) => self.serve(find(&mut slots.short, short)?, clock, touch),
            NearPrint::Long(long) => self.serve(find(&mut slots.long, *long)?, clock, touch),
            NearPrint::Wide(words) => self.serve(find_wide(&mut slots.wide, words)?, clock, touch),
        }
    }

    /// A copy of `slot`'s value, if it is current.
    #[inline(always)]
    fn serve<T: Clone, K>(
        &self,
        slot: &mut Slot<T, K>,
        clock: &ExpiryClock,
        touch: impl FnOnce(),
    ) -> Option<T> {
        if !slot.is_current(&self.epochs, clock) {
            return None;
        }
        if slot.count_hit() {
            touch();
        }
        // The copy last, straight into the value returned: see the module documentation.
        Some(T::clone(&slot.value))
    }

    /// A copy of L1's entry at `l1_key`, read through `read_l1`, if it holds a `T`, also kept
    /// in this thread's slot for `key` with the coarse deadline L1 holds it under. The copy
    /// made for the slot is the one returned when it cannot be kept (a thread without a table,
    /// or a site with no room for `T`): a value is copied twice only to be kept.
    #[inline(never)]
    pub(crate) fn fill<T: Clone + Send + Sync + 'static>(
        &self,
        key: NearKey<'_>,
        l1_key: &str,
        read_l1: impl FnOnce() -> Option<Held>,
    ) -> Lookup<T> {
        // Read before L1 is: a change after this read makes the slot stale.
        let epoch = self.epochs.stamp(Epochs::bucket_of(l1_key));
        let Some(Held {
            entry,
            fresh_coarse,
        }) = read_l1()
        else {
            return Lookup::Miss;
        };
        let Some(found) = entry.value.downcast_ref::<T>() else {
            return Lookup::WrongType;
        };
        // Copied before the table is borrowed: a value's Clone may call a cached function.
        let slot = Slot {
            key: (),
            value: found.clone(),
            epoch,
            deadline_hits: fresh_coarse & !LOW_MASK,
            expires_at: entry.stamp.fresh_until,
        };
        let release = self.releases.load(Ordering::Relaxed);
        let Some(Ok(mut table)) = self.tables.mine().map(RefCell::try_borrow_mut) else {
            return Lookup::Hit(slot.value);
        };
        let released =
            (table.release != release).then(|| std::mem::replace(&mut *table, Table::new(release)));
        let (dropped, unkept) = table.put(key, slot, self.max_slots);
        drop(table);
        // Dropped outside the borrow: the last reference to a value runs its Drop here.
        drop((dropped, released));
        Lookup::Hit(unkept.unwrap_or_else(|| found.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::mpsc, time::Duration};

    use proptest::prelude::*;

    use crate::{
        PerformanceConfig, Tier,
        cache::{MultiLevelCache, function_key, memoized::Memoized},
        config::CacheConfig,
    };

    const PATH: &str = "near::tests::f";
    static SITE: Memoized = Memoized::new(PATH);

    fn cache(max_entries: u64) -> (MultiLevelCache, std::sync::Arc<quanta::Mock>) {
        let config = PerformanceConfig {
            cache: CacheConfig {
                max_size: max_entries,
                ..CacheConfig::default()
            },
            ..PerformanceConfig::default()
        };
        let (clock, mock) = quanta::Clock::mock();
        let cache = MultiLevelCache::builder(&config)
            .clock(clock)
            .build()
            .expect("valid config");
        (cache, mock)
    }

    fn key(id: u8) -> String {
        function_key(PATH, &(&id,))
    }

    fn read(cache: &MultiLevelCache, id: u8) -> Option<u64> {
        cache.engine.hit_for_call::<u64, _>(&SITE, &(&id,))
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn repeated_reads_are_served_and_counted_as_hits() {
        let (cache, _) = cache(100);
        assert_eq!(read(&cache, 1), None, "nothing stored yet");
        cache.set_l1_local(&key(1), 7u64, None).expect("stored");
        for _ in 0..40 {
            assert_eq!(read(&cache, 1), Some(7));
        }
        let l1 = cache.stats().l1;
        assert_eq!(l1.hits, 40);
        assert_eq!(
            l1.misses, 0,
            "a fast-path miss is left for get_or_load to count"
        );
    }

    #[test]
    fn every_change_in_l1_is_seen_by_the_next_read() {
        let (cache, mock) = cache(100);
        let store = |id: u8, value: u64| cache.set_l1_local(&key(id), value, None).expect("stored");
        store(1, 1);
        store(2, 2);
        assert_eq!((read(&cache, 1), read(&cache, 2)), (Some(1), Some(2)));

        store(1, 10);
        assert_eq!(read(&cache, 1), Some(10), "overwritten");
        assert!(block_on(cache.delete(&key(1))).expect("deleted"));
        assert_eq!(read(&cache, 1), None, "deleted");
        assert_eq!(read(&cache, 2), Some(2));

        block_on(cache.invalidate_prefix(PATH)).expect("invalidated");
        assert_eq!(read(&cache, 2), None, "invalidated by prefix");

        store(3, 3);
        assert_eq!(read(&cache, 3), Some(3));
        block_on(cache.clear(Tier::L1)).expect("cleared");
        assert_eq!(read(&cache, 3), None, "cleared");

        store(4, 4);
        assert_eq!(read(&cache, 4), Some(4));
        mock.increment(CacheConfig::default().ttl);
        assert_eq!(read(&cache, 4), None, "expired");
    }

    /// Every `TOUCH_EVERY`th near hit of a slot reads L1's entry too (what tells quick_cache
    /// the key is hot), and no other does.
    #[test]
    fn one_near_hit_of_a_slot_in_touch_every_touches_l1() {
        use std::{cell::Cell, sync::Arc};

        use super::{
            Epochs, Fingerprint, Held, Lookup, Near, NearKey, NearPrint, NearSite, TOUCH_EVERY,
            ThreadStripe,
        };
        use crate::cache::{clock::ExpiryClock, entry::L1Entry, stamp::Stamp};

        static SITE_OF_K: NearSite = NearSite::new();

        let near = Near::new(Arc::new(Epochs::new()), 100);
        let clock = ExpiryClock::exact(quanta::Clock::mock().0);
        let until = clock.now() + Duration::from_secs(3600);
        let stamp = Stamp {
            fresh_until: until,
            expires_at: until,
            stale_until: until,
            shared: false,
        };
        let entry = L1Entry {
            value: Arc::new(7u64),
            stamp,
        };
        let print = Fingerprint::with_bytes(b"k", |print| print.copied()).expect("fits");
        let key = NearKey {
            site: &SITE_OF_K,
            print: NearPrint::of(&print),
        };
        let filled = near.fill::<u64>(key, "k", || {
            Some(Held {
                entry,
                fresh_coarse: 0,
            })
        });
        assert!(matches!(filled, Lookup::Hit(7)));
        let touches = Cell::new(0u16);
        for hit in 1..=10 * TOUCH_EVERY {
            let read = near.lookup::<u64>(ThreadStripe::current(), key, &clock, || {
                touches.set(touches.get() + 1)
            });
            assert_eq!(read, Some(7));
            assert_eq!(touches.get(), hit / TOUCH_EVERY, "after {hit} near hits");
        }
    }

    #[test]
    fn an_evicted_entry_is_not_served() {
        let (cache, _) = cache(4);
        for id in 0..20 {
            cache
                .set_l1_local(&key(id), u64::from(id), None)
                .expect("stored");
            assert_eq!(
                read(&cache, id),
                Some(u64::from(id)),
                "near copy of {id} taken"
            );
        }
        let held: Vec<u8> = (0..20)
            .filter(|&id| cache.engine.l1.contains(&key(id)))
            .collect();
        assert!(held.len() < 20, "capacity 4: most were evicted");
        for id in 0..20 {
            let expected = held.contains(&id).then_some(u64::from(id));
            assert_eq!(read(&cache, id), expected, "key {id}");
        }
    }

    #[test]
    fn a_value_of_another_type_is_not_served() {
        static TYPED: Memoized = Memoized::new(PATH);
        let (cache, _) = cache(100);
        let read_as_u64 = || cache.engine.hit_for_call::<u64, _>(&TYPED, &(&1u8,));
        cache.set_l1_local(&key(1), 5u32, None).expect("stored");
        assert_eq!(read_as_u64(), None, "stored as u32, read as u64");
        assert_eq!(
            cache.engine.hit_for_call::<u32, _>(&TYPED, &(&1u8,)),
            Some(5)
        );
        assert_eq!(read_as_u64(), None, "and not after a u32 read either");
    }

    thread_local! {
        static CLONES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// A value that counts its copies on this thread.
    #[derive(Debug, PartialEq)]
    struct Counted(u64);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.set(CLONES.get() + 1);
            Counted(self.0)
        }
    }

    /// A value is copied once for the caller, and once more only to be kept near: a read
    /// whose copy cannot be kept (its site holds four other types already) copies it once.
    #[test]
    fn a_value_is_copied_twice_only_to_be_kept() {
        static KEPT: Memoized = Memoized::new(PATH);
        static CROWDED: Memoized = Memoized::new(PATH);
        let (cache, _) = cache(100);
        let copies_of_read = |site: &'static Memoized| {
            CLONES.set(0);
            let read = cache.engine.hit_for_call::<Counted, _>(site, &(&0u8,));
            assert_eq!(read, Some(Counted(0)));
            CLONES.get()
        };
        cache
            .set_l1_local(&key(0), Counted(0), None)
            .expect("stored");
        assert_eq!(copies_of_read(&KEPT), 2, "kept near, and the caller's");
        assert_eq!(copies_of_read(&KEPT), 1, "from the near copy");

        // Four other types take the crowded site's room on this thread.
        let stored = "stored";
        cache.set_l1_local(&key(1), 1u8, None).expect(stored);
        cache.set_l1_local(&key(2), 2u16, None).expect(stored);
        cache.set_l1_local(&key(3), 3u32, None).expect(stored);
        cache.set_l1_local(&key(4), 4i64, None).expect(stored);
        let engine = &cache.engine;
        assert_eq!(engine.hit_for_call::<u8, _>(&CROWDED, &(&1u8,)), Some(1));
        assert_eq!(engine.hit_for_call::<u16, _>(&CROWDED, &(&2u8,)), Some(2));
        assert_eq!(engine.hit_for_call::<u32, _>(&CROWDED, &(&3u8,)), Some(3));
        assert_eq!(engine.hit_for_call::<i64, _>(&CROWDED, &(&4u8,)), Some(4));
        for _ in 0..3 {
            assert_eq!(copies_of_read(&CROWDED), 1, "read from L1, not kept");
        }
    }

    /// A site keeps values of up to `SITE_TYPES` types near (a generic function's instances
    /// share one), each slot marked with its value's type; further types are read from L1, and
    /// no read gets a value as another type.
    #[test]
    fn a_site_keeps_a_few_types_and_reads_the_others_from_l1() {
        static GENERIC: Memoized = Memoized::new(PATH);
        fn read_as<T: crate::cache::CacheValue + Clone>(
            cache: &MultiLevelCache,
            id: u8,
        ) -> Option<T> {
            cache.engine.hit_for_call::<T, _>(&GENERIC, &(&id,))
        }
        let (cache, _) = cache(100);
        // Six keys of six types, more than a site keeps near.
        let stored = "stored";
        cache.set_l1_local(&key(0), 10u8, None).expect(stored);
        cache.set_l1_local(&key(1), 11u16, None).expect(stored);
        cache.set_l1_local(&key(2), 12u32, None).expect(stored);
        cache.set_l1_local(&key(3), 13u64, None).expect(stored);
        cache.set_l1_local(&key(4), 14i32, None).expect(stored);
        cache.set_l1_local(&key(5), 15i64, None).expect(stored);
        for _ in 0..3 {
            assert_eq!(read_as::<u8>(&cache, 0), Some(10));
            assert_eq!(read_as::<u16>(&cache, 1), Some(11));
            assert_eq!(read_as::<u32>(&cache, 2), Some(12));
            assert_eq!(read_as::<u64>(&cache, 3), Some(13));
            assert_eq!(read_as::<i32>(&cache, 4), Some(14), "from L1");
            assert_eq!(read_as::<i64>(&cache, 5), Some(15), "from L1");
            for id in 1..6 {
                assert_eq!(read_as::<u8>(&cache, id), None, "key {id} as a u8");
            }
            assert_eq!(read_as::<u64>(&cache, 0), None, "key 0 as a u64");
        }
        assert_eq!(cache.stats().l1.hits, 18);
        assert!(
            cache.engine.l1.near_slots() > 0,
            "the first four were kept near"
        );

        // The same arguments with a value of another type: the u8's slot is not served.
        cache.set_l1_local(&key(0), 20u16, None).expect("stored");
        for _ in 0..3 {
            assert_eq!(read_as::<u8>(&cache, 0), None);
            assert_eq!(read_as::<u16>(&cache, 0), Some(20));
        }
    }

    #[test]
    fn caches_do_not_share_near_copies() {
        let (first, _) = cache(100);
        let (second, _) = cache(100);
        first.set_l1_local(&key(1), 1u64, None).expect("stored");
        second.set_l1_local(&key(1), 2u64, None).expect("stored");
        for _ in 0..3 {
            assert_eq!((read(&first, 1), read(&second, 1)), (Some(1), Some(2)));
        }
        drop(first);
        let (third, _) = cache(100);
        assert_eq!(read(&third, 1), None, "a new cache starts empty");
    }

    #[test]
    fn a_write_on_another_thread_is_seen() {
        let (cache, _) = cache(100);
        cache.set_l1_local(&key(1), 1u64, None).expect("stored");
        let (ask, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel();
        std::thread::scope(|scope| {
            let cache = &cache;
            scope.spawn(move || {
                while asked.recv().is_ok() {
                    answer.send(read(cache, 1)).expect("main thread listens");
                }
            });
            let ask_reader = || {
                ask.send(()).expect("reader listens");
                answers.recv().expect("reader answers")
            };
            assert_eq!(ask_reader(), Some(1));
            assert_eq!(ask_reader(), Some(1), "now from the reader's near copy");
            cache.set_l1_local(&key(1), 2u64, None).expect("stored");
            assert_eq!(ask_reader(), Some(2));
            drop(ask);
        });
    }

    /// A value whose `Clone` reads a cached function: the near cache is in use, so the inner
    /// read goes to L1, and both get their value. A copy keeps what the inner read returned.
    #[derive(Debug, PartialEq)]
    struct Nested {
        value: u64,
        inner: Option<u64>,
    }

    thread_local! {
        static NESTED_CACHE: std::cell::RefCell<Option<MultiLevelCache>> =
            const { std::cell::RefCell::new(None) };
    }

    impl Clone for Nested {
        fn clone(&self) -> Self {
            let inner =
                NESTED_CACHE.with_borrow(|cache| cache.as_ref().and_then(|cache| read(cache, 2)));
            Nested {
                value: self.value,
                inner,
            }
        }
    }

    #[test]
    fn a_clone_that_reads_a_cached_function_is_served() {
        let (cache, _) = cache(100);
        cache
            .set_l1_local(
                &key(1),
                Nested {
                    value: 1,
                    inner: None,
                },
                None,
            )
            .expect("stored");
        cache.set_l1_local(&key(2), 10u64, None).expect("stored");
        NESTED_CACHE.set(Some(cache.clone()));
        // A site of its own, as the other tests' reads are of other types.
        static NESTED: Memoized = Memoized::new(PATH);
        for _ in 0..3 {
            assert_eq!(
                cache.engine.hit_for_call::<Nested, _>(&NESTED, &(&1u8,)),
                Some(Nested {
                    value: 1,
                    inner: Some(10)
                })
            );
        }
        NESTED_CACHE.set(None);
    }

    /// More live threads than there are tables (one per exclusive stripe): those without one
    /// read L1, and every thread sees every write.
    #[test]
    fn threads_past_the_tables_read_l1() {
        const THREADS: usize = 80;
        let (cache, _) = cache(100);
        cache.set_l1_local(&key(1), 1u64, None).expect("stored");
        let all_read = std::sync::Barrier::new(THREADS + 1);
        let rewritten = std::sync::Barrier::new(THREADS + 1);
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        let first = (read(&cache, 1), read(&cache, 1));
                        let has_table = cache.engine.l1.near_slots() > 0;
                        all_read.wait();
                        rewritten.wait();
                        (first, read(&cache, 1), has_table)
                    })
                })
                .collect();
            all_read.wait();
            cache.set_l1_local(&key(1), 2u64, None).expect("stored");
            rewritten.wait();
            let mut with_tables = 0;
            for reader in readers {
                let (first, second, has_table) = reader.join().expect("no panic");
                assert_eq!((first, second), ((Some(1), Some(1)), Some(2)));
                with_tables += usize::from(has_table);
            }
            // Other tests' threads may hold leases too: only the bound is certain.
            assert!(
                with_tables < THREADS,
                "{with_tables} of {THREADS} threads had a table"
            );
        });
    }

    /// Reads a cached function when its thread's locals are destroyed, and sends the value.
    struct ReadsWhenDropped {
        cache: MultiLevelCache,
        sent: mpsc::Sender<Option<u64>>,
    }

    impl Drop for ReadsWhenDropped {
        fn drop(&mut self) {
            // Never read on this thread before: the read fills a slot, or would.
            self.sent.send(read(&self.cache, 2)).ok();
        }
    }

    thread_local! {
        static DROPPED_LAST: std::cell::RefCell<Option<ReadsWhenDropped>> =
            const { std::cell::RefCell::new(None) };
    }

    /// A cached function called from a `Drop` while a thread's locals are destroyed, after
    /// the near cache's own per-thread state is gone, is answered from L1. (Through
    /// `thread_local::ThreadLocal`, whose thread id had been released by then, the fill
    /// panicked, aborting the process.)
    #[test]
    fn a_read_while_the_thread_ends_is_answered() {
        let (cache, _) = cache(100);
        cache.set_l1_local(&key(1), 1u64, None).expect("stored");
        cache.set_l1_local(&key(2), 2u64, None).expect("stored");
        let (sent, received) = mpsc::channel();
        let reader = cache.clone();
        std::thread::spawn(move || {
            // Made first, so destroyed last: thread locals go in the reverse of their order.
            DROPPED_LAST.set(Some(ReadsWhenDropped {
                cache: reader.clone(),
                sent,
            }));
            assert_eq!(read(&reader, 1), Some(1), "a near copy taken");
        })
        .join()
        .expect("the thread ends without a panic");
        assert_eq!(received.recv().expect("read while dropped"), Some(2));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Set { id: u8, value: u64 },
        Read { id: u8 },
        Delete { id: u8 },
        InvalidateAll,
        Clear,
        Advance { secs: u64 },
    }

    fn step(ids: u8) -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..ids, any::<u64>()).prop_map(|(id, value)| Step::Set { id, value }),
            4 => (0..ids).prop_map(|id| Step::Read { id }),
            1 => (0..ids).prop_map(|id| Step::Delete { id }),
            1 => Just(Step::InvalidateAll),
            1 => Just(Step::Clear),
            1 => (0u64..40).prop_map(|secs| Step::Advance { secs }),
        ]
    }

    proptest! {
        /// Whatever the order of writes, removals, clears, expiry and evictions (capacity 4 for
        /// 6 keys), a read returns the latest value written, or nothing: never an older one.
        #[test]
        fn a_read_never_returns_a_replaced_or_removed_value(
            steps in proptest::collection::vec(step(6), 1..120)
        ) {
            check_coherence(4, steps)?;
        }

        /// The same with more keys than near slots (an L1 of 16 entries gets 16 near slots a
        /// thread): a fill of a new key into a full table starts it afresh, again and again.
        #[test]
        fn a_read_never_returns_a_replaced_value_with_more_keys_than_slots(
            steps in proptest::collection::vec(step(48), 1..400)
        ) {
            check_coherence(16, steps)?;
        }
    }

    /// A string argument for call `id` when `id` is not a multiple of 3: one whose
    /// fingerprint is past 16 bytes (kept in a site's map for long keys) for `id % 3 == 1`,
    /// one past a fingerprint altogether (kept under its wide print) for `id % 3 == 2`.
    fn string_argument(id: u8) -> String {
        match id % 3 {
            1 => format!("a longer argument {id:03}"),
            _ => format!("an argument too long for a fingerprint's forty bytes {id:03}"),
        }
    }

    /// The key of call `id` in the coherence checks: of a number for multiples of 3, else of
    /// a [`string_argument`], so that each of a site's maps is in use.
    fn any_key(id: u8) -> String {
        if id.is_multiple_of(3) {
            key(id)
        } else {
            function_key(PATH, &(&string_argument(id),))
        }
    }

    fn read_any(cache: &MultiLevelCache, id: u8) -> Option<u64> {
        if id.is_multiple_of(3) {
            read(cache, id)
        } else {
            cache
                .engine
                .hit_for_call::<u64, _>(&SITE, &(&string_argument(id),))
        }
    }

    /// A thread's table holds at most as many slots as L1 has entries: a fill of a new key
    /// into a full table starts it afresh.
    #[test]
    fn a_table_holds_no_more_slots_than_l1_has_entries() {
        let (cache, _) = cache(16);
        for id in 0..48 {
            cache
                .set_l1_local(&any_key(id), u64::from(id), None)
                .expect("stored");
            assert_eq!(read_any(&cache, id), Some(u64::from(id)), "key {id}");
            let slots = cache.engine.l1.near_slots();
            assert!((1..=16).contains(&slots), "{slots} slots after key {id}");
        }
    }

    /// Arguments too long for a short key, or for a fingerprint, are kept near as well, and
    /// stay coherent.
    #[test]
    fn long_arguments_are_kept_near() {
        for id in [1, 2] {
            let (cache, _) = cache(100);
            cache
                .set_l1_local(&any_key(id), 1u64, None)
                .expect("stored");
            for _ in 0..3 {
                assert_eq!(read_any(&cache, id), Some(1));
            }
            assert_eq!(cache.engine.l1.near_slots(), 1, "call {id} kept near");
            cache
                .set_l1_local(&any_key(id), 2u64, None)
                .expect("stored");
            assert_eq!(read_any(&cache, id), Some(2));
            assert_eq!(
                cache.engine.l1.near_slots(),
                1,
                "call {id} refilled in place"
            );
            assert_eq!(cache.stats().l1.hits, 4);
        }
    }

    /// A key written whole (a `key = ".."` template's) too long for a fingerprint is kept
    /// near under its wide print, and stays coherent.
    #[test]
    fn long_whole_keys_are_kept_near() {
        let (cache, _) = cache(100);
        let key = format!("{PATH}:{}", "k".repeat(60));
        let read = || cache.engine.hit_for_key::<u64>(&SITE, &key);
        cache.set_l1_local(&key, 5u64, None).expect("stored");
        for _ in 0..3 {
            assert_eq!(read(), Some(5));
        }
        assert_eq!(cache.engine.l1.near_slots(), 1, "kept near");
        cache.set_l1_local(&key, 6u64, None).expect("stored");
        assert_eq!(read(), Some(6));
        assert!(block_on(cache.delete(&key)).expect("deleted"));
        assert_eq!(read(), None);
    }

    fn check_coherence(capacity: u64, steps: Vec<Step>) -> Result<(), TestCaseError> {
        {
            let (cache, mock) = cache(capacity);
            let ttl = Duration::from_secs(60);
            let mut now = 0;
            // id -> (value, expiry in seconds)
            let mut model: HashMap<u8, (u64, u64)> = HashMap::new();
            for step in steps {
                match step {
                    Step::Set { id, value } => {
                        cache
                            .set_l1_local(&any_key(id), value, Some(ttl))
                            .expect("stored");
                        model.insert(id, (value, now + ttl.as_secs()));
                    }
                    Step::Read { id } => {
                        let current = model.get(&id).filter(|(_, expiry)| now < *expiry);
                        match (read_any(&cache, id), current) {
                            (None, _) => {}
                            (Some(got), Some(&(value, _))) => prop_assert_eq!(got, value),
                            (Some(got), None) => {
                                prop_assert!(false, "served {} for a removed key", got)
                            }
                        }
                    }
                    Step::Delete { id } => {
                        block_on(cache.delete(&any_key(id))).expect("deleted");
                        model.remove(&id);
                    }
                    Step::InvalidateAll => {
                        block_on(cache.invalidate_prefix(PATH)).expect("invalidated");
                        model.clear();
                    }
                    Step::Clear => {
                        block_on(cache.clear(Tier::L1)).expect("cleared");
                        model.clear();
                    }
                    Step::Advance { secs } => {
                        mock.increment(Duration::from_secs(secs));
                        now += secs;
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_table_grows_to_the_working_set_and_stays_coherent() {
        let (cache, _) = cache(8192);
        let key = |id: u16| function_key(PATH, &(&id,));
        let read = |id: u16| cache.engine.hit_for_call::<u64, _>(&SITE, &(&id,));
        const KEYS: u16 = 3000;
        for id in 0..KEYS {
            cache
                .set_l1_local(&key(id), u64::from(id), None)
                .expect("stored");
        }
        let mut rounds = 0;
        while cache.engine.l1.near_slots() < usize::from(KEYS) {
            rounds += 1;
            assert!(
                rounds <= 10,
                "grew only to {}",
                cache.engine.l1.near_slots()
            );
            for id in 0..KEYS {
                assert_eq!(read(id), Some(u64::from(id)));
            }
        }
        assert!(
            cache.engine.l1.near_slots() <= 8192,
            "at most as many slots as L1 has entries"
        );

        // Every value replaced after the growth: no read gets an old one.
        for id in 0..KEYS {
            cache
                .set_l1_local(&key(id), u64::from(id) + 1, None)
                .expect("stored");
        }
        for id in 0..KEYS {
            assert_eq!(read(id), Some(u64::from(id) + 1));
        }
        // Read again: from the near table now, hits all the same.
        let before = cache.stats().l1.hits;
        for id in 0..KEYS {
            assert_eq!(read(id), Some(u64::from(id) + 1));
        }
        assert_eq!(cache.stats().l1.hits - before, u64::from(KEYS));

        // A shrink under memory pressure: the thread drops its table (and the values it kept
        // alive) at its next read, and starts small again.
        cache.engine.l1.shrink(0.5);
        let kept: Vec<u16> = (0..KEYS)
            .filter(|&id| cache.engine.l1.contains(&key(id)))
            .collect();
        assert!(kept.len() < usize::from(KEYS));
        for id in 0..KEYS {
            let expected = kept.contains(&id).then_some(u64::from(id) + 1);
            assert_eq!(read(id), expected);
        }
        assert!(cache.engine.l1.near_slots() < usize::from(KEYS));
    }
}

/// Model checks of the coherence protocol: run with `RUSTFLAGS="--cfg shuttle" cargo test -p
/// perf-core --lib model`, which explores thread interleavings at every counter read and bump.
/// shuttle runs its threads on one OS thread, so they share one near table: the protocol does
/// not depend on whose table a slot is in.
#[cfg(all(test, shuttle))]
mod model {
    use std::{sync::Arc, time::Duration};

    use shuttle::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::cache::{
        entry::{L1Entry, Lookup},
        l1::L1,
        stamp::Stamp,
        stats::Counters,
    };

    const ITERATIONS: usize = 2000;
    static SITE: NearSite = NearSite::new();
    /// What the writer publishes once it removed the key.
    const REMOVED: u64 = u64::MAX;

    fn entry(value: u64, clock: &ExpiryClock) -> L1Entry {
        let until = clock.now() + Duration::from_secs(3600);
        L1Entry {
            value: Arc::new(value),
            stamp: Stamp {
                fresh_until: until,
                expires_at: until,
                stale_until: until,
                shared: false,
            },
        }
    }

    /// A cached function's read: the near copy, else L1 (keeping a near copy).
    fn read(l1: &L1, clock: &ExpiryClock, counters: &Counters, print: &Fingerprint) -> Option<u64> {
        let key = NearKey {
            site: &SITE,
            print: NearPrint::of(print),
        };
        if let Some(value) =
            l1.get_cloned_near::<u64>(ThreadStripe::current(), key, clock, |out| out.push('k'))
        {
            return Some(value);
        }
        match l1.get_cloned_remembered::<u64>(key, "k", clock, counters) {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss | Lookup::WrongType => None,
        }
    }

    /// A writer replaces the value twice, then removes it, publishing each change once it
    /// returned; readers never get a value older than the last change they saw published.
    #[test]
    fn a_read_after_a_change_returned_never_gets_the_value_it_replaced() {
        shuttle::check_random(
            || {
                let counters = Arc::new(Counters::default());
                let l1 = Arc::new(L1::new(100, Arc::clone(&counters)));
                let (clock, _) = quanta::Clock::mock();
                let clock = ExpiryClock::exact(clock);
                let print = Fingerprint::with_bytes(b"k", |print| print.copied()).expect("fits");
                let published = Arc::new(AtomicU64::new(1));
                l1.store("k", entry(1, &clock), &clock);

                let writer = {
                    let (l1, clock, published) =
                        (Arc::clone(&l1), clock.clone(), Arc::clone(&published));
                    shuttle::thread::spawn(move || {
                        for value in [2, 3] {
                            l1.store("k", entry(value, &clock), &clock);
                            published.store(value, Ordering::SeqCst);
                        }
                        l1.remove("k");
                        published.store(REMOVED, Ordering::SeqCst);
                    })
                };
                let readers: Vec<_> = (0..2)
                    .map(|_| {
                        let (l1, clock, counters, published) = (
                            Arc::clone(&l1),
                            clock.clone(),
                            Arc::clone(&counters),
                            Arc::clone(&published),
                        );
                        shuttle::thread::spawn(move || {
                            for _ in 0..4 {
                                let seen = published.load(Ordering::SeqCst);
                                let got = read(&l1, &clock, &counters, &print);
                                if let Some(got) = got {
                                    assert!(
                                        seen != REMOVED && got >= seen,
                                        "read {got} after change {seen} had returned"
                                    );
                                }
                            }
                        })
                    })
                    .collect();
                writer.join().expect("no panic");
                for reader in readers {
                    reader.join().expect("no panic");
                }
                assert_eq!(read(&l1, &clock, &counters, &print), None, "removed");
            },
            ITERATIONS,
        );
    }
}
