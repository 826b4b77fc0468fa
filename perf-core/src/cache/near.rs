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
//! A thread's table starts at [`INITIAL_SETS`] sets of [`WAYS`] slots (the tags apart from
//! the slots) and grows four-fold whenever most of a table's worth of fills pushed another
//! key out, up to room for every entry L1 holds and at most [`MAX_SETS`] sets: a thread
//! reading a thousand keys, or a hundred thousand, keeps them all here as a thread reading a
//! hundred does (a fixed 512 slots made every read past them a string key, an L1 lookup and a
//! fill, slower than `cached`'s mutex and map). A table that may grow no further and still
//! thrashes keeps only one fill in [`THRASHING_FILLS`].
//!
//! A hit reads three cache lines of the table: its set's index (tags and where the values
//! are), the slot's [`Hot`] line (key, change count, deadline), and the value. Past the
//! processor's cache every line is a memory miss, so nothing else a hit needs lives
//! elsewhere: the slot holds no `TypeId`, only its type's index among its site's
//! ([`NearSite`]), and what only a fill or an expiry check near the deadline reads
//! ([`Cold`]) is in an array of its own. With 128-byte slots (the type and the counters in a
//! second line) 10k keys' lines outgrew a 2 MiB L2 that `cached`'s fit in. A slot costs 88
//! bytes and its share of an index line: a table costs a thread about 100 bytes per key of
//! its working set, and at most twice L1's entries' worth.
//!
//! quick_cache learns which entries are hot from its own reads, so every [`TOUCH_EVERY`]th
//! near hit of a slot also reads L1; a key is not evicted for being served from here. A slot
//! holds a reference to its value until the slot is reused: values L1 dropped can outlive it
//! in tables. When L1 sheds entries for memory (a shrink) or is cleared, every thread drops
//! its table at its next read ([`Near::release`]), so the memory really goes.
//!
//! A hit inlines whole into its caller, and the copy of the value is its last step. Behind
//! `std`'s `thread_local!` (whose `with` was not inlined here), or with work after it, the
//! copy moved through memory in pieces of other sizes than it was written in, which stalls
//! the processor's store forwarding: a hit took 70-77 ns instead of 41 (`benches/macros.rs`).
//! A thread's table stays with the cache when the thread ends, for a later thread to reuse.

use std::{
    any::TypeId,
    cell::RefCell,
    hash::{BuildHasher, Hash, Hasher},
    sync::{Arc, OnceLock, atomic::Ordering},
};

use crate::{striped::PerThread, sync::AtomicU64};

use super::{
    clock::ExpiryClock,
    entry::{AnyValue, Held, L1Entry},
    fingerprint::Fingerprint,
};

/// Sets a thread's table starts with, allocated on its first fill.
const INITIAL_SETS: usize = 64;
/// The most sets a thread's table grows to, whatever L1's capacity: 196,608 slots, 19 MB.
pub(crate) const MAX_SETS: usize = 1 << 15;
/// Slots per set: a key may sit in any slot of the set its hash picks. Six, so that a set's
/// index is one cache line. In a table half full about 4% of the keys find their set full
/// (and every read of them misses), by the Poisson estimate of keys per set; a table grows
/// while most of its fills push a key out.
const WAYS: usize = 6;
/// A table grows four-fold at a time: a working set far past it grows it in a few steps.
const GROWTH: usize = 4;
/// A table that thrashes keeps one value in this many that reads of L1 find.
const THRASHING_FILLS: usize = 8;
/// One near hit of a slot in this many also reads L1, keeping the entry hot there. Such a
/// read builds the string key and looks it up, hundreds of ns past the processor's cache:
/// one in 64 cost 1k- and 10k-key hits 7-10% (`hit_sweep`, three alternating runs), and the
/// Zipf trace's hit ratio is the same either way (0.789).
const TOUCH_EVERY: u16 = 256;
/// Buckets of [`Epochs`]: enough that unrelated writes rarely share one, few enough that
/// the counters stay in the processor's cache.
const BUCKETS: usize = 2048;
const _: () = assert!(BUCKETS.is_power_of_two() && BUCKETS <= 1 << LOW_BITS);
/// The low bits of a [`Hot`] word that hold a small field next to a 48-bit one.
const LOW_BITS: u32 = 16;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;

/// How many types of value one site's slots hold: a generic function's instances share
/// their site, and those past the first few are read from L1.
const SITE_TYPES: usize = 4;

/// A call site: its identity in near tables (its address: each is a `static`), and the types
/// of value its slots hold, each fixed by the first fill of that type. A slot records its
/// value's type as an index into them, so it holds no `TypeId` of its own.
#[derive(Debug, Default)]
pub(crate) struct NearSite {
    types: [OnceLock<TypeId>; SITE_TYPES],
}

impl NearSite {
    pub(crate) const fn new() -> Self {
        Self {
            types: [const { OnceLock::new() }; SITE_TYPES],
        }
    }

    /// `wanted`'s index among the site's types, if it is one. The first is checked inline and
    /// the others out of line: with the whole loop inlined, 100-key hits measured 1.8x
    /// `cached`'s speed in three runs of three, against 2.0x.
    #[inline(always)]
    fn kind_of(&self, wanted: TypeId) -> Option<u8> {
        if self.types[0].get() == Some(&wanted) {
            return Some(0);
        }
        self.later_kind_of(wanted)
    }

    #[inline(never)]
    fn later_kind_of(&self, wanted: TypeId) -> Option<u8> {
        let later = self
            .types
            .iter()
            .skip(1)
            .position(|t| t.get() == Some(&wanted))?;
        // SITE_TYPES fits a u8.
        Some(later as u8 + 1)
    }

    /// `wanted`'s index, taking a free one for it if it has none; `None` when every index is
    /// another type's.
    fn admit(&self, wanted: TypeId) -> Option<u8> {
        let index = self
            .types
            .iter()
            .position(|t| *t.get_or_init(|| wanted) == wanted)?;
        Some(index as u8)
    }
}

/// What a near slot is keyed by: a call site and its arguments' fingerprint (or the
/// fingerprint of the whole L1 key, for a site whose keys are written whole).
#[derive(Clone, Copy)]
pub(crate) struct NearKey<'a> {
    pub(crate) site: &'static NearSite,
    pub(crate) print: &'a Fingerprint,
}

/// A slot's key: a [`NearKey`] and the index of its value's type at its site.
#[derive(Clone, Copy)]
struct SlotKey<'a> {
    key: NearKey<'a>,
    kind: u8,
}

impl SlotKey<'_> {
    /// Inlined whole, reading the fingerprint's words from registers: `hash_one` was left out
    /// of line and read them back from memory.
    #[inline(always)]
    #[allow(clippy::manual_hash_one)]
    fn hash(&self) -> u64 {
        let seed = std::ptr::from_ref(self.key.site) as u64 ^ u64::from(self.kind);
        let mut hasher = foldhash::fast::FixedState::with_seed(seed).build_hasher();
        self.key.print.hash(&mut hasher);
        hasher.finish()
    }

    #[inline]
    fn matches(&self, slot: &Hot) -> bool {
        *self.key.print == slot.print
            && slot.kind() == self.kind
            && slot
                .site
                .is_some_and(|site| std::ptr::eq(site, self.key.site))
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

    /// A bucket and its count now, as a [`Hot`] slot keeps them: the count's low 48 bits
    /// above the bucket (a slot is stale only if its bucket changed a multiple of 2^48 times
    /// since, unread).
    fn stamp(&self, bucket: usize) -> u64 {
        self.count(bucket) << LOW_BITS | bucket as u64
    }

    /// Whether a [`stamp`](Self::stamp)'s bucket is unchanged since.
    #[inline(always)]
    fn unchanged(&self, stamp: u64) -> bool {
        self.count((stamp & LOW_MASK) as usize) << LOW_BITS == stamp & !LOW_MASK
    }
}

/// What a near hit reads of its slot, in one cache line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Hot {
    print: Fingerprint,
    /// `None` when the slot is free.
    site: Option<&'static NearSite>,
    /// The bucket and its change count, from [`Epochs::stamp`].
    epoch: u64,
    /// The entry's coarse deadline (`ExpiryClock::coarse_deadline`) with its low 16 bits
    /// cleared, so never later than the entry's; in them, the value's type (its index among
    /// the site's types) above the slot's near hits (counted modulo 256).
    deadline_kind_hits: u64,
}

/// Where the type's index sits in `Hot::deadline_kind_hits`, above the hit count's byte.
const KIND_SHIFT: u32 = 8;
const HITS_MASK: u64 = (1 << KIND_SHIFT) - 1;
const _: () = assert!((HITS_MASK + 1).is_multiple_of(TOUCH_EVERY as u64));

impl Hot {
    fn packed(coarse_deadline: u64, kind: u8) -> u64 {
        coarse_deadline & !LOW_MASK | u64::from(kind) << KIND_SHIFT
    }

    #[inline(always)]
    fn coarse_deadline(&self) -> u64 {
        self.deadline_kind_hits & !LOW_MASK
    }

    #[inline(always)]
    fn kind(&self) -> u8 {
        (self.deadline_kind_hits >> KIND_SHIFT) as u8
    }

    /// Counts a near hit; true on every [`TOUCH_EVERY`]th.
    #[inline(always)]
    fn count_hit(&mut self) -> bool {
        let hits = (self.deadline_kind_hits.wrapping_add(1)) & HITS_MASK;
        self.deadline_kind_hits = self.deadline_kind_hits & !HITS_MASK | hits;
        hits.is_multiple_of(u64::from(TOUCH_EVERY))
    }
}

/// What a slot holds that a near hit does not read: the reference that keeps its value alive,
/// and the precise expiry, read when the coarse clock is too close to tell.
struct Cold {
    value: AnyValue,
    expires_at: quanta::Instant,
}

/// What a lookup reads first of a set: each way's tag (0 when free) and where its slot's
/// value is, in one cache line. Apart from the slots, so that it stays in the processor's
/// cache when they do not; and with the value's address, so that the processor reads the
/// slot and the value at once instead of one after the other (past the cache's size, a
/// memory miss each).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct SetIndex {
    tags: [u16; WAYS],
    /// `Arc::as_ptr` of the slot's value, null when free.
    values: [*const (); WAYS],
}

impl Default for SetIndex {
    fn default() -> Self {
        Self {
            tags: [0; WAYS],
            values: [std::ptr::null(); WAYS],
        }
    }
}

/// One thread's slots, `WAYS` a set, grown as the thread's working set needs.
///
/// Aligned to two cache lines: every hit writes its table's borrow flag, which must not share
/// a line (or the adjacent line the processor fetches with it) with another thread's table
/// (2 threads at 10k keys: 73-84 ns a hit, from 200-216).
#[repr(align(128))]
struct Table {
    /// Per set: its [`SetIndex`], its slots' [`Hot`] lines, and the rest of them.
    index: Box<[SetIndex]>,
    hot: Box<[[Hot; WAYS]]>,
    cold: Box<[[Option<Cold>; WAYS]]>,
    /// Fills in the current window of `capacity()` fills, and how many of them replaced
    /// another key's slot.
    fills: usize,
    displaced: usize,
    /// Set when the table cannot grow and most fills push another key out: then only one
    /// fill in [`THRASHING_FILLS`] is kept, the rest would only churn the slots.
    thrashing: bool,
    skipped: usize,
    /// Turns the way a full set gives up next.
    next_victim: usize,
    /// The [`Near::releases`] count the table was made under.
    release: u64,
}

// SAFETY: the index's pointers are to the values that the table's own slots hold through
// `Arc`s of `Send + Sync` values: they move with the slots, and are read only through them.
unsafe impl Send for Table {}

/// A slot a lookup found: what the hit reads, the rest (read only near the deadline), and
/// where the value is.
struct Found<'t> {
    hot: &'t mut Hot,
    cold: &'t Option<Cold>,
    value: *const (),
}

/// Under no [`Near::releases`] count: a table not yet made.
const NOT_MADE: u64 = u64::MAX;

impl Default for Table {
    /// A thread's table until its first fill: no slots, and released, so that the fill makes
    /// the table.
    fn default() -> Self {
        Self::with_sets(0, NOT_MADE)
    }
}

impl Table {
    fn with_sets(sets: usize, release: u64) -> Self {
        Self {
            release,
            index: vec![SetIndex::default(); sets].into_boxed_slice(),
            hot: vec![[Hot::default(); WAYS]; sets].into_boxed_slice(),
            cold: (0..sets).map(|_| Default::default()).collect(),
            fills: 0,
            displaced: 0,
            thrashing: false,
            skipped: 0,
            next_victim: 0,
        }
    }

    fn sets(&self) -> usize {
        self.index.len()
    }

    fn capacity(&self) -> usize {
        self.sets() * WAYS
    }

    /// The key's set, and its tag within the set (never 0, which marks a free slot).
    #[inline]
    fn place(&self, key: &SlotKey<'_>) -> (usize, u16) {
        let hash = key.hash();
        // The number of sets is a power of two.
        (hash as usize & (self.sets() - 1), (hash >> 48) as u16 | 1)
    }

    /// The key's slot.
    #[inline(always)]
    fn find(&mut self, key: &SlotKey<'_>) -> Option<Found<'_>> {
        let (set, tag) = self.place(key);
        let index = self.index.get(set)?;
        let hot = self.hot.get_mut(set)?;
        // The ways whose tag matches, as bits: the compare of all six is one vector operation.
        let mut ways = index
            .tags
            .iter()
            .enumerate()
            .fold(0u32, |ways, (way, t)| ways | u32::from(*t == tag) << way);
        while ways != 0 {
            let way = ways.trailing_zeros() as usize;
            ways &= ways - 1;
            if hot.get(way).is_some_and(|slot| key.matches(slot)) {
                return Some(Found {
                    hot: hot.get_mut(way)?,
                    cold: self.cold.get(set)?.get(way)?,
                    value: *index.values.get(way)?,
                });
            }
        }
        None
    }

    /// Keeps a value in the slot of its key: the key's own (stale) slot, else a free one, else
    /// another key's. Returns the slot's previous value, and whether it held another key.
    fn put(&mut self, key: &SlotKey<'_>, hot: Hot, cold: Cold) -> (Option<Cold>, bool) {
        let (set, tag) = self.place(key);
        let (Some(index), Some(hots), Some(colds)) = (
            self.index.get_mut(set),
            self.hot.get_mut(set),
            self.cold.get_mut(set),
        ) else {
            return (Some(cold), false);
        };
        let own = (0..WAYS).find(|&way| index.tags[way] != 0 && key.matches(&hots[way]));
        let free = || index.tags.iter().position(|&tag| tag == 0);
        let (way, displacing) = match own.or_else(free) {
            Some(way) => (way, false),
            None => {
                self.next_victim = self.next_victim.wrapping_add(1);
                (self.next_victim % WAYS, true)
            }
        };
        index.tags[way] = tag;
        index.values[way] = Arc::as_ptr(&cold.value).cast();
        hots[way] = hot;
        (colds[way].replace(cold), displacing)
    }

    /// Whether to keep the value a read of L1 found: always, unless the table thrashes.
    fn admits(&mut self) -> bool {
        if !self.thrashing {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped.is_multiple_of(THRASHING_FILLS)
    }

    /// Counts a fill; true when most of the last `capacity()` fills pushed another key out
    /// (the thread's working set is larger than the table) and the table may grow. If it may
    /// not, it is thrashing.
    fn outgrown(&mut self, displacing: bool, max_sets: usize) -> bool {
        self.fills += 1;
        self.displaced += usize::from(displacing);
        if self.fills < self.capacity() {
            return false;
        }
        let overfull = self.displaced > self.fills / 2;
        let may_grow = self.sets() < max_sets;
        self.thrashing = overfull && !may_grow;
        (self.fills, self.displaced) = (0, 0);
        overfull && may_grow
    }

    /// A table `GROWTH` times larger (at most `max_sets` sets) holding this one's slots.
    fn grown(&mut self, max_sets: usize) -> Self {
        let mut grown = Self::with_sets((self.sets() * GROWTH).min(max_sets), self.release);
        let slots = self
            .hot
            .iter()
            .flatten()
            .zip(self.cold.iter_mut().flatten());
        for (hot, cold) in slots {
            let (Some(site), Some(cold)) = (hot.site, cold.take()) else {
                continue;
            };
            let key = SlotKey {
                key: NearKey {
                    site,
                    print: &hot.print,
                },
                kind: hot.kind(),
            };
            // A slot that finds its new set full is dropped: the table is rebuilt once in a
            // while, and a later read refills it.
            drop(grown.put(&key, *hot, cold));
        }
        grown
    }
}

/// One cache's near tables, a table a thread, and the change counters they are checked
/// against.
pub(crate) struct Near {
    epochs: Arc<Epochs>,
    /// The most sets a thread's table grows to.
    max_sets: usize,
    tables: PerThread<RefCell<Table>>,
    /// Bumped to have every thread drop its table at its next read ([`Near::release`]).
    releases: AtomicU64,
}

impl Near {
    /// Near tables for an L1 of `l1_capacity` entries: a table grows to the power of two of
    /// sets with room for every key L1 holds, and at most [`MAX_SETS`].
    pub(crate) fn new(epochs: Arc<Epochs>, l1_capacity: u64) -> Self {
        let wanted = usize::try_from(l1_capacity)
            .unwrap_or(usize::MAX)
            .div_ceil(WAYS)
            .clamp(1, MAX_SETS);
        Self {
            epochs,
            max_sets: wanted.next_power_of_two().min(MAX_SETS),
            tables: PerThread::default(),
            releases: AtomicU64::new(0),
        }
    }

    /// Has every thread drop its table, and the references to values it holds, at its next
    /// read: values L1 let go of (a shrink under memory pressure, a clear) are then freed
    /// rather than kept alive by near slots.
    pub(crate) fn release(&self) {
        self.releases.fetch_add(1, Ordering::Release);
    }

    /// How many slots this thread's table has.
    #[cfg(test)]
    pub(crate) fn thread_capacity(&self) -> usize {
        self.tables
            .mine()
            .map_or(0, |table| table.borrow().capacity())
    }

    /// A copy of this thread's copy of the value at `key`, if it has one that is a live `T`
    /// unchanged in L1. Every [`TOUCH_EVERY`]th near hit of a slot also `touch`es L1's entry.
    #[inline(always)]
    pub(crate) fn lookup<T: Clone + 'static>(
        &self,
        key: NearKey<'_>,
        clock: &ExpiryClock,
        touch: impl FnOnce(),
    ) -> Option<T> {
        // Re-entered (a value's Clone or Drop calling a cached function): not from here.
        let mut table = self.tables.mine()?.try_borrow_mut().ok()?;
        if table.release != self.releases.load(Ordering::Relaxed) {
            return None;
        }
        let kind = key.site.kind_of(TypeId::of::<T>())?;
        let Found { hot, cold, value } = table.find(&SlotKey { key, kind })?;
        if !self.epochs.unchanged(hot.epoch)
            || !(clock.before_coarse_deadline(hot.coarse_deadline())
                || cold
                    .as_ref()
                    .is_some_and(|cold| clock.is_live(cold.expires_at)))
        {
            return None;
        }
        if hot.count_hit() {
            touch();
        }
        // SAFETY: `value` is where the slot's own `Arc` points (both are set together, under
        // this borrow). The slot's site and type index are `key.site` and `kind` (`find`
        // matched both), a slot's value is of the type at its index of its site (`fill` checks
        // each), and that type is `T`: the value is a `T`, alive for as long as the slot holds
        // it.
        let value = unsafe { &*value.cast::<T>() };
        // The copy last, straight into the value returned: see the module documentation.
        Some(value.clone())
    }

    /// Reads L1's entry at `l1_key` through `read_l1` and, if it holds a `wanted`, keeps it in
    /// this thread's slot for `key`, with the coarse deadline L1 holds it under.
    #[inline(never)]
    pub(crate) fn fill(
        &self,
        key: NearKey<'_>,
        l1_key: &str,
        wanted: TypeId,
        read_l1: impl FnOnce() -> Option<Held>,
    ) -> Option<L1Entry> {
        // Read before L1 is: a change after this read makes the slot stale.
        let epoch = self.epochs.stamp(Epochs::bucket_of(l1_key));
        let Held {
            entry,
            fresh_coarse,
        } = read_l1()?;
        // The value's own type, not the `Arc`'s.
        if (*entry.value).type_id() != wanted {
            return Some(entry);
        }
        let Some(kind) = key.site.admit(wanted) else {
            return Some(entry);
        };
        let key = SlotKey { key, kind };
        let release = self.releases.load(Ordering::Relaxed);
        let new_table = || Table::with_sets(INITIAL_SETS.min(self.max_sets), release);
        let Some(Ok(mut table)) = self.tables.mine().map(RefCell::try_borrow_mut) else {
            return Some(entry);
        };
        let released =
            (table.release != release).then(|| std::mem::replace(&mut *table, new_table()));
        if !table.admits() {
            drop(table);
            drop(released);
            return Some(entry);
        }
        let hot = Hot {
            print: *key.key.print,
            site: Some(key.key.site),
            epoch,
            deadline_kind_hits: Hot::packed(fresh_coarse, kind),
        };
        let cold = Cold {
            value: Arc::clone(&entry.value),
            expires_at: entry.stamp.fresh_until,
        };
        let (replaced, displacing) = table.put(&key, hot, cold);
        let outgrown = table.outgrown(displacing, self.max_sets).then(|| {
            let grown = table.grown(self.max_sets);
            std::mem::replace(&mut *table, grown)
        });
        drop(table);
        // Dropped outside the borrow: the last reference to a value runs its Drop here.
        drop((replaced, outgrown, released));
        Some(entry)
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
        use std::{any::TypeId, cell::Cell, sync::Arc};

        use super::{Epochs, Fingerprint, Held, L1Entry, Near, NearKey, NearSite, TOUCH_EVERY};
        use crate::cache::{clock::ExpiryClock, stamp::Stamp};

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
            print: &print,
        };
        let filled = near.fill(key, "k", TypeId::of::<u64>(), || {
            Some(Held {
                entry,
                fresh_coarse: 0,
            })
        });
        assert!(filled.is_some());
        let touches = Cell::new(0u16);
        for hit in 1..=10 * TOUCH_EVERY {
            let read = near.lookup::<u64>(key, &clock, || touches.set(touches.get() + 1));
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
            cache.engine.l1.near_capacity() > 0,
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
    /// read goes to L1, and both get their value.
    #[derive(Debug, PartialEq)]
    struct Nested(u64);

    thread_local! {
        static NESTED_CACHE: std::cell::RefCell<Option<MultiLevelCache>> =
            const { std::cell::RefCell::new(None) };
    }

    impl Clone for Nested {
        fn clone(&self) -> Self {
            let inner =
                NESTED_CACHE.with_borrow(|cache| cache.as_ref().and_then(|cache| read(cache, 2)));
            Nested(self.0 + inner.unwrap_or(1000))
        }
    }

    #[test]
    fn a_clone_that_reads_a_cached_function_is_served() {
        let (cache, _) = cache(100);
        cache
            .set_l1_local(&key(1), Nested(1), None)
            .expect("stored");
        cache.set_l1_local(&key(2), 10u64, None).expect("stored");
        NESTED_CACHE.set(Some(cache.clone()));
        // A site of its own, as the other tests' reads are of other types.
        static NESTED: Memoized = Memoized::new(PATH);
        for _ in 0..3 {
            assert_eq!(
                cache.engine.hit_for_call::<Nested, _>(&NESTED, &(&1u8,)),
                Some(Nested(11))
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
                        let has_table = cache.engine.l1.near_capacity() > 0;
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

        /// The same with more keys than near slots (an L1 of 16 entries gets 24 near slots a
        /// thread): slots are taken over by other keys, and the table thrashes.
        #[test]
        fn a_read_never_returns_a_replaced_value_with_more_keys_than_slots(
            steps in proptest::collection::vec(step(48), 1..400)
        ) {
            check_coherence(16, steps)?;
        }
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
                            .set_l1_local(&key(id), value, Some(ttl))
                            .expect("stored");
                        model.insert(id, (value, now + ttl.as_secs()));
                    }
                    Step::Read { id } => {
                        let current = model.get(&id).filter(|(_, expiry)| now < *expiry);
                        match (read(&cache, id), current) {
                            (None, _) => {}
                            (Some(got), Some(&(value, _))) => prop_assert_eq!(got, value),
                            (Some(got), None) => {
                                prop_assert!(false, "served {} for a removed key", got)
                            }
                        }
                    }
                    Step::Delete { id } => {
                        block_on(cache.delete(&key(id))).expect("deleted");
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
        while cache.engine.l1.near_capacity() < usize::from(KEYS) {
            rounds += 1;
            assert!(
                rounds <= 10,
                "grew only to {}",
                cache.engine.l1.near_capacity()
            );
            for id in 0..KEYS {
                assert_eq!(read(id), Some(u64::from(id)));
            }
        }
        assert!(
            cache.engine.l1.near_capacity() <= 2 * 8192,
            "at most twice as many slots as L1 has entries"
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
        assert!(cache.engine.l1.near_capacity() < usize::from(KEYS));
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
    use crate::cache::{entry::Lookup, l1::L1, stamp::Stamp, stats::Counters};

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
        let key = NearKey { site: &SITE, print };
        if let Some(value) = l1.get_cloned_near::<u64>(key, clock, |out| out.push('k')) {
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
