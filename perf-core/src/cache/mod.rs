//! The multi-level cache: L1 typed values, L2 compressed bytes, and an optional remote tier.
//!
//! | tier | holds | bounded by |
//! |---|---|---|
//! | [`Tier::L1`] | typed values; a hit is a lookup, a downcast and a clone | entries (`cache_max_size`) |
//! | [`Tier::L2`] | encoded, zstd-compressed bytes | bytes (`l2_max_bytes`) |
//! | [`Tier::Redis`] | the same bytes, shared by every instance | the remote tier |
//!
//! A tier argument names the deepest tier a value lives in: storing at [`Tier::L2`] stores in
//! L1 and L2. Reads walk down from L1 to the named tier and copy a hit into the tiers above
//! it with its remaining TTL. quick_cache has no TTL, so every entry carries its expiry
//! instant: an expired entry is a miss, and a background sweep removes expired entries so that
//! they stop holding capacity.
//!
//! Loads (`load.rs` the API, `attempt.rs` a caller's way through a load, `background.rs` loads
//! run in a task, `target.rs` where they read and store) protect the source: one loader per
//! key, its failure shared; fail-safe stale values ([`LoadOptions::fail_safe`]) whose lifetime
//! (`stamp.rs`: fresh, refresh due, stale) travels with them through L2 and the remote tier;
//! soft and hard timeouts; refresh-ahead; TTL jitter.
//!
//! In front of L1, each thread keeps its recent `#[cache_result]` hits (`near`), keyed by the
//! call site and a fingerprint of the arguments, and serves repeats without building the key
//! or touching L1's locks. Every L1 insert, removal and eviction bumps a change counter that
//! those copies are checked against, so a near copy is never older than L1.

mod attempt;
mod background;
mod changes;
mod clock;
mod coalesce;
pub(crate) mod codec;
#[cfg(test)]
mod failure_tests;
mod fingerprint;
mod key;
mod l1;
mod l2;
mod load;
mod near;
mod options;
mod remote;
mod shared;
mod stamp;
mod stats;
mod tags;
mod target;
#[cfg(test)]
mod tests;
mod tier;

use std::{
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use self::{
    clock::ExpiryClock,
    coalesce::Flights,
    codec::Codec,
    fingerprint::Fingerprint,
    l1::{AnyValue, Found, L1, L1Entry, Lookup},
    l2::{L2, L2Entry},
    near::NearKey,
    options::Policy,
    stamp::{Age, Stamp},
    stats::{Counters, Event, MetricsPublisher, Op},
};
/// The clock type [`CacheBuilder::clock`] takes; `Clock::mock()` moves time by hand in tests.
pub use quanta::{Clock, Mock};

pub use self::{
    key::{function_key, random_id, with_key, write_function_key},
    load::LoaderError,
    options::{ErrorSharing, Freshness, LoadOptions, Loaded, SharedFailure},
    remote::{BoxFuture, Invalidation, InvalidationSink, RemoteTier},
    stats::{CacheStats, LoadStats, TierStats},
    tier::{CacheValue, SharedValue, Tier},
};
use crate::{Error, config::PerformanceConfig};

/// The multi-level cache. Cloning is cheap and shares the cache.
///
/// ```
/// # tokio_test_block_on(async {
/// use perf_core::{MultiLevelCache, PerformanceConfig, Tier};
///
/// let cache = MultiLevelCache::new(&PerformanceConfig::default())?;
/// cache.set("ad:42", vec![1u32, 2, 3], Tier::L2, None).await?;
/// let hit = cache.get::<Vec<u32>>("ad:42", Tier::L2).await?;
/// assert_eq!(hit.as_deref(), Some(&vec![1, 2, 3]));
///
/// let ad: Result<std::sync::Arc<String>, std::io::Error> = cache
///     .get_or_load("ad:43", Tier::L2, None, || async { Ok("loaded once".to_string()) })
///     .await;
/// assert_eq!(ad?.as_str(), "loaded once");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MultiLevelCache {
    inner: Arc<Inner>,
}

struct Inner {
    l1: L1,
    l2: L2,
    remote: Option<Arc<dyn RemoteTier>>,
    codec: Codec,
    /// The configuration's TTL, fail-safe, timeout, refresh and jitter settings.
    defaults: Policy,
    max_key_bytes: usize,
    clock: ExpiryClock,
    counters: Arc<Counters>,
    flights: Flights,
    /// Slots for background refreshes.
    background: Arc<tokio::sync::Semaphore>,
    /// Brackets every change to local copies (a write, a delete, another instance's
    /// invalidation), so that a read copying a value up a tier meanwhile gives its copy back
    /// (see `changes.rs`).
    changes: changes::Changes,
    publisher: MetricsPublisher,
    /// `cache_enabled`: when off, the get_or_load family and `#[cache_result]` call straight
    /// through to their loaders.
    enabled: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for MultiLevelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLevelCache")
            .field("l1_entries", &self.inner.l1.len())
            .field("l2_bytes", &self.inner.l2.bytes())
            .field("remote", &self.inner.remote)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MultiLevelCache`].
#[must_use]
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    config: PerformanceConfig,
    remote: Option<Arc<dyn RemoteTier>>,
    clock: Option<quanta::Clock>,
}

impl CacheBuilder {
    /// Adds the shared tier below L2 (perf-redis's `RedisTier`).
    pub fn remote_tier(mut self, remote: Arc<dyn RemoteTier>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The clock that decides expiry. Tests pass [`Clock::mock()`] to move time by hand.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates the configuration and builds the cache.
    pub fn build(self) -> Result<MultiLevelCache, Error> {
        self.config.validate()?;
        let config = self.config.cache;
        l2::check_budget(&config)?;
        let counters = Arc::new(Counters::default());
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let inner = Inner {
            l1: L1::new(config.max_size, Arc::clone(&counters)),
            l2: L2::new(
                config.l2_max_bytes,
                l2::largest_entry(&config),
                Arc::clone(&counters),
            ),
            remote: self.remote,
            codec: Codec {
                compression_threshold: as_usize(config.compression_threshold_bytes),
                zstd_level: config.zstd_level,
                compress_literals: config.zstd_compress_literals,
                max_value_bytes: as_usize(config.max_value_bytes),
            },
            defaults: Policy::from_config(&config),
            max_key_bytes: as_usize(config.max_key_bytes),
            clock: self
                .clock
                .map_or_else(ExpiryClock::real, ExpiryClock::exact),
            counters,
            flights: Flights::default(),
            background: Arc::new(tokio::sync::Semaphore::new(load::MAX_BACKGROUND_LOADS)),
            changes: changes::Changes::new(),
            publisher: MetricsPublisher::default(),
            enabled: std::sync::atomic::AtomicBool::new(config.enabled),
        };
        let cache = MultiLevelCache {
            inner: Arc::new(inner),
        };
        if let Some(remote) = &cache.inner.remote {
            remote.subscribe(shared::invalidation_sink(cache.downgrade()));
        }
        Ok(cache)
    }
}

/// A validated write: the key is within its limit and the lifetime is known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WritePlan {
    /// The local lifetime (`shared` is set when the value is stored).
    stamp: Stamp,
    policy: Policy,
    /// When the plan was made, for the remote tier's TTL.
    planned_at: quanta::Instant,
}

impl WritePlan {
    /// How long the remote tier keeps the value: to the end of its stale period.
    fn remote_ttl(&self) -> Duration {
        self.stamp
            .stale_until
            .saturating_duration_since(self.planned_at)
            .max(Duration::from_millis(1))
    }
}

impl MultiLevelCache {
    /// A cache with the configuration's sizes, limits and default TTL, and no remote tier.
    pub fn new(config: &PerformanceConfig) -> Result<Self, Error> {
        Self::builder(config).build()
    }

    pub fn builder(config: &PerformanceConfig) -> CacheBuilder {
        CacheBuilder {
            config: config.clone(),
            remote: None,
            clock: None,
        }
    }

    // ----- reads -----

    /// The value at `key`, looking from L1 down to `tier`. Expired, undecodable and mistyped
    /// entries are counted misses. Errs only on a key over `max_key_bytes`.
    ///
    /// Values come back as `Arc<T>`: an L1 hit copies a pointer, never the value.
    pub async fn get<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
    ) -> Result<Option<Arc<T>>, Error> {
        self.check_key(key)?;
        let tier = self.effective(tier);
        if let Some(value) = self.local_lookup(key, tier, Op::Get) {
            return Ok(Some(value));
        }
        Ok(self.remote_lookup_at(key, tier, Op::Get).await)
    }

    /// The L1 value at `key`, for values without serde (L1 never encodes).
    pub fn get_l1<T: CacheValue>(&self, key: &str) -> Result<Option<Arc<T>>, Error> {
        self.check_key(key)?;
        Ok(self.l1_lookup(key, Op::Get))
    }

    /// For `#[cache_result]`'s fast path: a copy of the L1 value of the call of `path` with
    /// `arguments` (the key [`function_key`] gives), counted as a `get_or_load` hit. A miss is
    /// not counted, since the `get_or_load` that follows counts it. Repeats are served from
    /// this thread's near cache, which every L1 change keeps coherent.
    #[doc(hidden)]
    #[inline(always)]
    pub fn hit_for_call<T: CacheValue + Clone, A: serde::Serialize + ?Sized>(
        &self,
        path: &'static str,
        arguments: &A,
    ) -> Option<T> {
        if !self.is_enabled() {
            return None;
        }
        let write_l1_key = |out: &mut String| {
            // Unencodable arguments give a key nothing is stored under: a miss.
            let _encoded = write_function_key(out, path, arguments);
        };
        Fingerprint::with(arguments, |print| match print {
            Some(print) => self.hit_near(NearKey { site: path, print }, write_l1_key),
            None => with_key(write_l1_key, |l1_key| self.hit_l1_for_load(l1_key)),
        })
    }

    /// [`hit_for_call`](Self::hit_for_call) for a key given whole (a key template's).
    #[doc(hidden)]
    #[inline]
    pub fn hit_for_key<T: CacheValue + Clone>(&self, key: &str) -> Option<T> {
        if !self.is_enabled() {
            return None;
        }
        Fingerprint::with_bytes(key.as_bytes(), |print| match print {
            Some(print) => self.hit_near(
                NearKey {
                    site: near::WHOLE_KEY,
                    print,
                },
                |out| out.push_str(key),
            ),
            None => self.hit_l1_for_load(key),
        })
    }

    #[inline(always)]
    fn hit_near<T: CacheValue + Clone>(
        &self,
        near_key: NearKey<'_>,
        write_l1_key: impl FnOnce(&mut String),
    ) -> Option<T> {
        let inner = &self.inner;
        if let Some(value) = inner.l1.get_cloned_near::<T>(near_key, &inner.clock) {
            inner.counters.record(Tier::L1, Event::Hit(Op::GetOrLoad));
            return Some(value);
        }
        self.counted_fast_hit(self.near_miss(near_key, write_l1_key))
    }

    /// Out of line, so that the near hit around it stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn near_miss<T: CacheValue + Clone>(
        &self,
        near_key: NearKey<'_>,
        write_l1_key: impl FnOnce(&mut String),
    ) -> Lookup<T> {
        let inner = &self.inner;
        with_key(write_l1_key, |l1_key| {
            if l1_key.len() > inner.max_key_bytes {
                return Lookup::Miss;
            }
            inner
                .l1
                .get_cloned_remembered(near_key, l1_key, &inner.clock, &inner.counters)
        })
    }

    /// A fast-path read that bypasses the near cache (keys without a fingerprint).
    fn hit_l1_for_load<T: CacheValue + Clone>(&self, key: &str) -> Option<T> {
        if key.len() > self.inner.max_key_bytes {
            return None;
        }
        let lookup =
            match self
                .inner
                .l1
                .get_fresh::<T>(key, &self.inner.clock, &self.inner.counters)
            {
                Lookup::Hit(value) => Lookup::Hit(T::clone(&value)),
                Lookup::Miss => Lookup::Miss,
                Lookup::WrongType => Lookup::WrongType,
            };
        self.counted_fast_hit(lookup)
    }

    fn counted_fast_hit<T>(&self, lookup: Lookup<T>) -> Option<T> {
        let inner = &self.inner;
        match lookup {
            Lookup::Hit(value) => {
                inner.counters.record(Tier::L1, Event::Hit(Op::GetOrLoad));
                Some(value)
            }
            Lookup::Miss | Lookup::WrongType => None,
        }
    }

    // ----- writes -----

    /// Stores `value` in every tier from L1 down to `tier`, for `ttl` (default `cache_ttl`).
    ///
    /// Refused, storing nothing: a key over `max_key_bytes`, a zero TTL, a value that does not
    /// serialize or is over `max_value_bytes`. When only the remote write fails, the local
    /// tiers hold the value and the error is returned.
    ///
    /// A write at L1 removes the local L2 copy of the key. The remote tier keeps what it holds
    /// until its TTL: replace shared values with a write at [`Tier::Redis`] or a
    /// [`delete`](Self::delete).
    pub async fn set<T: SharedValue>(
        &self,
        key: &str,
        value: T,
        tier: Tier,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let plan = self.plan_write(key, ttl)?;
        self.store(key, Arc::new(value), self.effective(tier), &plan)
            .await
    }

    /// Stores `value` in L1 only, for values without serde.
    pub fn set_l1<T: CacheValue>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let plan = self.plan_write(key, ttl)?;
        self.insert_l1_only(key, Arc::new(value), plan.stamp);
        Ok(())
    }

    /// [`get`](Self::get) for synchronous code: reads L1, then L2 when `tier` reaches it; the
    /// remote tier is never asked.
    pub fn get_local<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
    ) -> Result<Option<Arc<T>>, Error> {
        self.check_key(key)?;
        Ok(self.local_lookup(key, tier, Op::Get))
    }

    /// [`set`](Self::set) for synchronous code: stores in L1, and in L2 when `tier` reaches
    /// it; the remote tier is not written.
    pub fn set_local<T: SharedValue>(
        &self,
        key: &str,
        value: T,
        tier: Tier,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let plan = self.plan_write(key, ttl)?;
        self.store_local(key, Arc::new(value), tier.min(Tier::L2), &plan)
            .map(drop)
    }

    // ----- removal -----

    /// Removes `key` from every tier. Returns whether a local tier held it.
    ///
    /// When the remote tier fails and [replays failed
    /// changes](RemoteTier::replays_failed_changes) (the Redis tier does), the removal is
    /// queued there and this returns `Ok`: this instance holds no copy, and Redis and the
    /// other instances drop theirs once Redis answers again.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.check_key(key)?;
        let (in_l1, in_l2) = {
            let _changing = self.inner.changes.key(key);
            (self.inner.l1.remove(key), self.inner.l2.remove(key))
        };
        if let Some(remote) = &self.inner.remote {
            let removed = remote.delete(key).await;
            self.removal_outcome(remote.as_ref(), removed)?;
        }
        Ok(in_l1 || in_l2)
    }

    /// Removes every key starting with `prefix` from every tier. Returns how many local
    /// entries were removed. A remote failure is handled as in [`delete`](Self::delete).
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let removed = {
            let _changing = self.inner.changes.all();
            self.inner.l1.remove_where(|key, _| key.starts_with(prefix))
                + self.inner.l2.remove_where(|key, _| key.starts_with(prefix))
        };
        if let Some(remote) = &self.inner.remote {
            let removed = remote.invalidate_prefix(prefix).await;
            self.removal_outcome(remote.as_ref(), removed)?;
        }
        Ok(removed)
    }

    /// Empties one tier. Clearing the remote tier also drops this instance's local copies of
    /// shared values (other instances drop theirs when told); a remote failure is handled as
    /// in [`delete`](Self::delete).
    pub async fn clear(&self, tier: Tier) -> Result<(), Error> {
        let inner = &self.inner;
        match tier {
            Tier::L1 => inner.l1.clear(),
            Tier::L2 => inner.l2.clear(),
            Tier::Redis => {
                {
                    let _changing = inner.changes.all();
                    inner.l1.remove_where(|_, entry| entry.stamp.shared);
                    inner.l2.remove_where(|_, entry| entry.stamp.shared);
                }
                if let Some(remote) = &inner.remote {
                    let cleared = remote.clear().await;
                    self.removal_outcome(remote.as_ref(), cleared)?;
                }
            }
        }
        Ok(())
    }

    /// Empties every tier.
    pub async fn clear_all(&self) -> Result<(), Error> {
        for tier in Tier::ALL {
            self.clear(tier).await?;
        }
        Ok(())
    }

    /// Removes expired entries (past their fail-safe period, where they have one) from L1 and
    /// L2 so that they stop holding capacity; returns how many. The optimizer's background
    /// sweeper calls this every `cache_sweep_interval`.
    pub fn sweep_expired(&self) -> u64 {
        let now = self.inner.clock.now();
        self.inner.flights.sweep(now);
        let l1 = self
            .inner
            .l1
            .remove_where(|_, e| e.stamp.stale_until <= now);
        let l2 = self
            .inner
            .l2
            .remove_where(|_, e| e.stamp.stale_until <= now);
        let counters = &self.inner.counters;
        counters.record_n(Tier::L1, Event::Expiration, l1);
        counters.record_n(Tier::L2, Event::Expiration, l2);
        l1 + l2
    }

    /// Drops about `fraction` of L1's entries and of L2's bytes, least valuable first (the
    /// eviction policy decides), to give memory back under pressure. Returns how many L1 and
    /// L2 entries went. The remote tier is untouched.
    pub fn shrink(&self, fraction: f64) -> (u64, u64) {
        (
            self.inner.l1.shrink(fraction),
            self.inner.l2.shrink(fraction),
        )
    }

    /// Whether the get_or_load family and `#[cache_result]` use the cache (`cache_enabled`).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner
            .enabled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns caching through the get_or_load family and `#[cache_result]` on or off (a
    /// benchmark's baseline, or an incident); what is cached stays, and `get`/`set` still work.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner
            .enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    // ----- observation -----

    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let counters = &inner.counters;
        CacheStats::new(
            counters.tier_stats(Tier::L1, Some(inner.l1.len()), None),
            counters.tier_stats(Tier::L2, Some(inner.l2.len()), Some(inner.l2.bytes())),
            inner
                .remote
                .as_ref()
                .map(|_| counters.tier_stats(Tier::Redis, None, None)),
            counters.load_stats(inner.flights.in_flight()),
        )
    }

    /// Feeds what changed since the last call into the `metrics` facade:
    /// `cache_hits_total` and `cache_misses_total` {tier, operation}, `cache_size_bytes` {tier}.
    pub fn publish_metrics(&self) {
        let tiers: &[Tier] = if self.inner.remote.is_some() {
            &Tier::ALL
        } else {
            &Tier::ALL[..2]
        };
        self.inner
            .publisher
            .publish(&self.inner.counters, tiers, self.inner.l2.bytes());
    }

    /// The bytes `value` takes in L2 and the remote tier (header and compression included),
    /// or the error a write of it would meet. For sizing `l2_max_bytes`.
    pub fn encoded_len<T: SharedValue>(&self, value: &T) -> Result<usize, Error> {
        Ok(self
            .inner
            .codec
            .encode(value, codec::UnixTimes::default())?
            .len())
    }

    /// L2's byte budget.
    pub fn l2_capacity_bytes(&self) -> u64 {
        self.inner.l2.capacity()
    }

    pub fn has_remote_tier(&self) -> bool {
        self.inner.remote.is_some()
    }

    /// A handle that does not keep the cache alive (for background loops).
    pub(crate) fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.inner))
    }

    // ----- internals -----

    /// `Tier::Redis` without a remote tier means the deepest tier there is.
    fn effective(&self, tier: Tier) -> Tier {
        if tier == Tier::Redis && self.inner.remote.is_none() {
            Tier::L2
        } else {
            tier
        }
    }

    fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.len() > self.inner.max_key_bytes {
            return Err(Error::KeyTooLong {
                len: key.len(),
                limit: self.inner.max_key_bytes,
            });
        }
        Ok(())
    }

    /// A write with the configuration's settings and `ttl` (default `cache_ttl`).
    fn plan_write(&self, key: &str, ttl: Option<Duration>) -> Result<WritePlan, Error> {
        let mut policy = self.inner.defaults;
        policy.ttl = ttl.unwrap_or(policy.ttl);
        self.plan_with(key, policy)
    }

    fn plan_with(&self, key: &str, policy: Policy) -> Result<WritePlan, Error> {
        self.check_key(key)?;
        if policy.ttl.is_zero() {
            return Err(Error::ZeroTtl);
        }
        let ttl = policy.jittered_ttl();
        let planned_at = self.inner.clock.now();
        let stamp =
            stamp::for_write(planned_at, ttl, &policy).ok_or(Error::TtlOverflow(policy.ttl))?;
        Ok(WritePlan {
            stamp,
            policy,
            planned_at,
        })
    }

    /// A read of the local tiers: L1, then L2 when `tier` reaches it. Synchronous, so that
    /// callers do it before building any future and an L1 hit costs no more than a
    /// synchronous lookup.
    #[inline]
    fn local_lookup<T: SharedValue>(&self, key: &str, tier: Tier, op: Op) -> Option<Arc<T>> {
        if let Some(value) = self.l1_lookup(key, op) {
            return Some(value);
        }
        match tier {
            Tier::L1 => None,
            Tier::L2 | Tier::Redis => self.l2_lookup(key, op),
        }
    }

    /// The rest of a read after the local tiers missed: the remote tier, when `tier` is it.
    async fn remote_lookup_at<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
        op: Op,
    ) -> Option<Arc<T>> {
        let found = self.remote_find_at::<T>(key, tier, op).await?;
        found.age.is_live().then_some(found.value)
    }

    #[inline]
    fn l1_lookup<T: CacheValue>(&self, key: &str, op: Op) -> Option<Arc<T>> {
        let counters = &self.inner.counters;
        match self.inner.l1.get::<T>(key, &self.inner.clock, counters) {
            Lookup::Hit(value) => {
                counters.record(Tier::L1, Event::Hit(op));
                return Some(value);
            }
            Lookup::WrongType => counters.record(Tier::L1, Event::TypeMismatch),
            Lookup::Miss => {}
        }
        counters.record(Tier::L1, Event::Miss(op));
        None
    }

    fn l2_lookup<T: SharedValue>(&self, key: &str, op: Op) -> Option<Arc<T>> {
        match self.l2_find::<T>(key, op) {
            Some(found) if found.age.is_live() => Some(found.value),
            _ => None,
        }
    }

    /// The L2 value at `key` in any age, counted (a stale value as a miss) and copied into L1
    /// when live.
    fn l2_find<T: SharedValue>(&self, key: &str, op: Op) -> Option<Found<Arc<T>>> {
        let counters = &self.inner.counters;
        let mark = self.inner.changes.mark(key);
        let Some((value, stamp, age)) = self.l2_decode::<T>(key) else {
            counters.record(Tier::L2, Event::Miss(op));
            return None;
        };
        let value = Arc::new(value);
        if age.is_live() {
            counters.record(Tier::L2, Event::Hit(op));
            self.insert_l1(key, value.clone(), stamp);
            // Written or invalidated since the L2 read: the copy may be older than L1's last
            // value, so it goes (as for promotions from the remote tier, see `remote_accept`).
            if !self.inner.changes.unchanged(key, mark) {
                let copy: AnyValue = value.clone();
                self.inner.l1.remove_value(key, &copy);
                counters.record(Tier::L2, Event::RacedInvalidation);
            }
        } else {
            counters.record(Tier::L2, Event::Miss(op));
        }
        Some(Found { value, age, stamp })
    }

    /// The decodable L2 value at `key` that is still kept, its stamp and age. Removes what is
    /// neither.
    fn l2_decode<T: SharedValue>(&self, key: &str) -> Option<(T, Stamp, Age)> {
        let inner = &self.inner;
        let entry = inner.l2.get(key)?;
        let Some(age) = entry.stamp.age(&inner.clock) else {
            if inner.l2.remove_if(key, |e| !e.stamp.is_kept(&inner.clock)) {
                inner.counters.record(Tier::L2, Event::Expiration);
            }
            return None;
        };
        match inner.codec.decode::<T>(&entry.bytes) {
            Ok(decoded) => Some((decoded.value, entry.stamp, age)),
            // Another call site's value of another type under this key: a miss, left alone.
            Err(error @ codec::DecodeError::Payload(_)) => {
                tracing::debug!(key, %error, "L2 entry holds another type; a miss");
                inner.counters.record(Tier::L2, Event::TypeMismatch);
                None
            }
            Err(error) => {
                tracing::debug!(key, %error, "L2 entry does not decode; removed");
                inner.counters.record(Tier::L2, Event::DecodeError);
                inner
                    .l2
                    .remove_if(key, |e| Arc::ptr_eq(&e.bytes, &entry.bytes));
                None
            }
        }
    }

    /// Stores in every tier down to `tier`. Refusals (encoding, size) store nothing.
    async fn store<T: SharedValue>(
        &self,
        key: &str,
        value: Arc<T>,
        tier: Tier,
        plan: &WritePlan,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let encoded = self.store_local(key, value, tier, plan)?;
        if let (Tier::Redis, Some(remote), Some(bytes)) = (tier, &inner.remote, encoded) {
            remote
                .set(key, &bytes, plan.remote_ttl())
                .await
                .map_err(|e| self.remote_failed(e))?;
            inner.counters.record(Tier::Redis, Event::Insert);
        }
        Ok(())
    }

    /// Stores in L1, and in L2 when `tier` reaches it; returns the encoded bytes for the
    /// remote tier. Refusals (encoding, size) store nothing.
    fn store_local<T: SharedValue>(
        &self,
        key: &str,
        value: Arc<T>,
        tier: Tier,
        plan: &WritePlan,
    ) -> Result<Option<Arc<[u8]>>, Error> {
        let inner = &self.inner;
        if tier == Tier::L1 {
            self.insert_l1_only(key, value, plan.stamp);
            return Ok(None);
        }
        let times = plan.stamp.unix_times(plan.planned_at);
        let bytes: Arc<[u8]> = inner.codec.encode(&*value, times)?.into();
        if let Err(heavy) = inner.l2.check_fits(key, &bytes) {
            inner.counters.record(Tier::L2, Event::Refused);
            return Err(Error::ValueTooLarge {
                len: heavy.weight as usize,
                limit: heavy.shard_capacity as usize,
                limit_name: "L2 shard capacity",
            });
        }
        let stamp = Stamp {
            shared: tier == Tier::Redis,
            ..plan.stamp
        };
        // A read promoting the older value meanwhile gives its copy back.
        let _changing = self.inner.changes.key(key);
        self.insert_l1(key, value, stamp);
        self.insert_l2(key, Arc::clone(&bytes), stamp);
        Ok(Some(bytes))
    }

    fn insert_l1(&self, key: &str, value: AnyValue, stamp: Stamp) {
        self.inner.l1.insert(key, L1Entry { value, stamp });
        self.inner.counters.record(Tier::L1, Event::Insert);
    }

    /// A write that stops at L1 drops the local L2 copy, which would otherwise resurface
    /// with an older value once the L1 copy expires or is evicted.
    fn insert_l1_only(&self, key: &str, value: AnyValue, stamp: Stamp) {
        let _changing = self.inner.changes.key(key);
        self.insert_l1(
            key,
            value,
            Stamp {
                shared: false,
                ..stamp
            },
        );
        self.inner.l2.remove(key);
    }

    fn insert_l2(&self, key: &str, bytes: Arc<[u8]>, stamp: Stamp) {
        let entry = L2Entry { bytes, stamp };
        match self.inner.l2.insert(key, entry) {
            Ok(()) => self.inner.counters.record(Tier::L2, Event::Insert),
            Err(_) => self.inner.counters.record(Tier::L2, Event::Refused),
        }
    }

    /// A failed remote write: the value is local only, and the tier may have queued the
    /// removal of its older value.
    fn remote_failed(&self, error: crate::error::RemoteError) -> Error {
        self.inner.counters.record(Tier::Redis, Event::Error);
        match &self.inner.remote {
            Some(remote) if remote.replays_failed_changes() => Error::RemoteQueued(error),
            _ => Error::Remote(error),
        }
    }

    /// A remote removal is done once the tier applied it or queued it for its replay.
    fn removal_outcome<T>(
        &self,
        remote: &dyn RemoteTier,
        result: Result<T, crate::error::RemoteError>,
    ) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err(error) if remote.replays_failed_changes() => {
                self.inner.counters.record(Tier::Redis, Event::Error);
                tracing::debug!(%error, "remote removal queued for when the tier is back");
                Ok(())
            }
            Err(error) => Err(self.remote_failed(error)),
        }
    }
}

/// A cache handle that does not keep the cache alive.
#[derive(Clone)]
pub(crate) struct WeakCache(Weak<Inner>);

impl WeakCache {
    pub(crate) fn upgrade(&self) -> Option<MultiLevelCache> {
        self.0.upgrade().map(|inner| MultiLevelCache { inner })
    }
}

impl fmt::Debug for WeakCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakCache")
    }
}
