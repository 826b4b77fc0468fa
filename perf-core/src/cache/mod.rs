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
//! Loads protect the source: one loader per
//! key, its failure shared; fail-safe stale values ([`LoadOptions::fail_safe`]) whose lifetime
//! (`stamp.rs`: fresh, refresh due, stale) travels with them through L2 and the remote tier;
//! soft and hard timeouts; refresh-ahead; TTL jitter.
//!
//! In front of L1, each thread keeps its recent `#[cache_result]` hits (`near`), keyed by the
//! call site and a fingerprint of the arguments, and serves repeats without building the key
//! or touching L1's locks. Every L1 insert, removal and eviction bumps a change counter that
//! those copies are checked against, so a near copy is never older than L1.
//!
//! ## Method names
//!
//! A method's name says which values it takes and whether it awaits:
//!
//! | | async: every tier down to the one named | synchronous (`_local`): L1 and L2, never the remote tier |
//! |---|---|---|
//! | serde values, any tier | [`get`], [`get_many`], [`set`], [`get_or_load`], [`get_or_load_with`], [`get_or_load_detached`] | [`get_local`], [`set_local`], [`get_or_load_local`] |
//! | values without serde (`_l1`: L1 only) | [`get_or_load_l1`] | [`get_l1_local`], [`set_l1_local`], [`get_or_load_l1_local`] |
//!
//! Removals ([`delete`], [`invalidate_prefix`], [`invalidate_tag`], [`clear`]) are async: they
//! reach the remote tier. The reads return the engine's future itself (`impl Future`), so that
//! a hit polls one future rather than one wrapped in another; `get`'s is written by hand and
//! answers an L1 hit in its first poll without building the remote read (`engine/get.rs`).
//!
//! ## Layout
//!
//! This module is the public API; each method hands over to the engine (`engine/`), which
//! owns the tiers (`l1.rs`, `l2.rs`, the remote tier behind [`RemoteTier`]), the near cache
//! (`near.rs`), the coalescer (`coalesce.rs`) and the counters (`stats.rs`). `entry.rs` holds
//! the entry types the tiers share, `quick.rs` the helpers over quick_cache's maps. Generated
//! code from `#[cache_result]` reaches the engine only through [`crate::macro_support`].
//!
//! [`get`]: MultiLevelCache::get
//! [`get_many`]: MultiLevelCache::get_many
//! [`set`]: MultiLevelCache::set
//! [`get_or_load`]: MultiLevelCache::get_or_load
//! [`get_or_load_with`]: MultiLevelCache::get_or_load_with
//! [`get_or_load_detached`]: MultiLevelCache::get_or_load_detached
//! [`get_local`]: MultiLevelCache::get_local
//! [`set_local`]: MultiLevelCache::set_local
//! [`get_or_load_local`]: MultiLevelCache::get_or_load_local
//! [`get_or_load_l1`]: MultiLevelCache::get_or_load_l1
//! [`get_l1_local`]: MultiLevelCache::get_l1_local
//! [`set_l1_local`]: MultiLevelCache::set_l1_local
//! [`get_or_load_l1_local`]: MultiLevelCache::get_or_load_l1_local
//! [`delete`]: MultiLevelCache::delete
//! [`invalidate_prefix`]: MultiLevelCache::invalidate_prefix
//! [`invalidate_tag`]: MultiLevelCache::invalidate_tag
//! [`clear`]: MultiLevelCache::clear

mod builder;
mod changes;
mod clock;
mod coalesce;
pub(crate) mod codec;
#[cfg(test)]
mod codec_props;
mod engine;
mod entry;
#[cfg(test)]
mod failure_tests;
pub(crate) mod fingerprint;
mod key;
mod l1;
mod l2;
pub(crate) mod memoized;
mod near;
mod options;
mod protect;
#[cfg(test)]
mod protect_tests;
mod quick;
mod remote;
mod remote_size;
mod stamp;
mod stats;
#[cfg(test)]
mod tests;
mod tier;

use std::{
    fmt,
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

/// The clock type [`CacheBuilder::clock`] takes; `Clock::mock()` moves time by hand in tests.
pub use quanta::{Clock, Mock};

pub(crate) use self::engine::Engine;
pub use self::engine::Revocation;
pub use self::{
    builder::CacheBuilder,
    key::{function_key, random_id, with_key, write_function_key},
    l1::L1_ENTRY_BYTES_ESTIMATE,
    memoized::{FunctionStats, MAX_FUNCTIONS, function_stats},
    options::{ErrorSharing, Freshness, LoadOptions, Loaded, LoaderError},
    remote::{BoxFuture, Invalidation, InvalidationSink, RemoteTier},
    stats::{CacheStats, LoadStats, TierStats},
    tier::{CacheValue, SharedValue, Tier},
};
pub use crate::error::SharedFailure;

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
    engine: Arc<Engine>,
}

impl fmt::Debug for MultiLevelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.engine, f)
    }
}

impl MultiLevelCache {
    /// A cache with the configuration's sizes, limits and default TTL, and no remote tier.
    pub fn new(config: &PerformanceConfig) -> Result<Self, Error> {
        Self::builder(config).build()
    }

    /// A builder for a cache with the configuration's settings, to add a remote tier or a
    /// test clock before [`build`](CacheBuilder::build).
    pub fn builder(config: &PerformanceConfig) -> CacheBuilder {
        CacheBuilder::new(config)
    }

    // ----- reads and writes -----

    /// The value at `key`, looking from L1 down to `tier`. Expired, undecodable and mistyped
    /// entries are counted misses. Errs only on a key over `max_key_bytes`.
    ///
    /// Values come back as `Arc<T>`: an L1 hit copies a pointer, never the value.
    ///
    #[inline]
    pub fn get<'a, T: SharedValue>(
        &'a self,
        key: &'a str,
        tier: Tier,
    ) -> impl Future<Output = Result<Option<Arc<T>>, Error>> {
        self.engine.get(key, tier)
    }

    /// The L1 value at `key`, for values without serde (L1 never encodes).
    #[inline]
    pub fn get_l1_local<T: CacheValue>(&self, key: &str) -> Result<Option<Arc<T>>, Error> {
        self.engine.get_l1_local(key)
    }

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
        self.engine.set(key, value, tier, ttl).await
    }

    /// Stores `value` in L1 only, for values without serde.
    pub fn set_l1_local<T: CacheValue>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        self.engine.set_l1_local(key, value, ttl)
    }

    /// [`get`](Self::get) for synchronous code: reads L1, then L2 when `tier` reaches it; the
    /// remote tier is never asked.
    pub fn get_local<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
    ) -> Result<Option<Arc<T>>, Error> {
        self.engine.get_local(key, tier)
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
        self.engine.set_local(key, value, tier, ttl)
    }

    // ----- loads -----

    /// The value at `key` (down to `tier`), or else the loader's value, stored down to `tier`
    /// for `ttl` (default `cache_ttl`), with the configuration's fail-safe, timeout, refresh
    /// and jitter settings.
    ///
    /// Concurrent misses on one key in this process run one loader, and every caller gets its
    /// outcome: its value, or its failure (the caller whose loader it was gets its own error;
    /// the others get [`Error::LoaderFailed`] carrying its message, converted with `From`).
    /// Caching never fails the call: a key, TTL or value the cache refuses is loaded and
    /// returned uncached, counted and logged. See [`get_or_load_with`](Self::get_or_load_with)
    /// for per-call settings and whether the value was stale.
    pub fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> impl Future<Output = Result<Arc<T>, E>>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.engine.get_or_load(key, tier, ttl, loader)
    }

    /// [`get_or_load`](Self::get_or_load) with per-call [`LoadOptions`], telling whether the
    /// value is fresh or stale (fail-safe). The loader runs in the caller's future, so it may
    /// borrow; a load given up at a timeout is dropped, and a refresh-ahead is run by the
    /// first caller past the refresh point (the others keep the current value). Options that
    /// cannot work together are refused with [`Error::InvalidLoadOptions`].
    pub fn get_or_load_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> impl Future<Output = Result<Loaded<T>, E>>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.engine.get_or_load_with(key, options, loader)
    }

    /// [`get_or_load_with`](Self::get_or_load_with) with a loader that runs in a tokio task:
    /// a load that passes the soft timeout goes on and fills the cache when it finishes (until
    /// the hard timeout, where it is dropped), and refresh-ahead reloads in the background
    /// while every caller keeps the current value.
    pub fn get_or_load_detached<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> impl Future<Output = Result<Loaded<T>, E>>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.engine.get_or_load_detached(key, options, loader)
    }

    /// [`get_or_load`](Self::get_or_load) in L1 only, for values without serde.
    pub fn get_or_load_l1<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> impl Future<Output = Result<Arc<T>, E>>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.engine.get_or_load_l1(key, ttl, loader)
    }

    /// [`get_or_load`](Self::get_or_load) for synchronous code: L1, then L2 when `tier`
    /// reaches it; the remote tier is not used. Concurrent misses on one key run one loader,
    /// the other callers blocking until it finishes and sharing its outcome; a caller that
    /// finds an async `get_or_load` loading the key runs its own loader rather than block
    /// that one's runtime. Fail-safe and failure caching apply; timeouts do not (a
    /// synchronous loader cannot be stopped), and a refresh is run by the first caller past
    /// the refresh point.
    pub fn get_or_load_local<T, E, F>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        self.engine.get_or_load_local(key, tier, ttl, loader)
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
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        self.engine.get_or_load_l1_local(key, ttl, loader)
    }

    /// Values for many keys at once, looking from L1 down to `tier`, in the order asked. Keys
    /// that miss locally go to the remote tier in one round trip (MGET for Redis).
    pub fn get_many<T: SharedValue>(
        &self,
        keys: &[&str],
        tier: Tier,
    ) -> impl Future<Output = Result<Vec<Option<Arc<T>>>, Error>> {
        self.engine.get_many(keys, tier)
    }

    // ----- removal -----

    /// Removes `key` from every tier. Returns whether a local tier held it.
    ///
    /// When the remote tier fails and [replays failed
    /// changes](RemoteTier::replays_failed_changes) (the Redis tier does), the removal is
    /// queued there and this returns `Ok`: this instance holds no copy, and Redis and the
    /// other instances drop theirs once Redis answers again.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.engine.delete(key).await
    }

    /// Removes every key starting with `prefix` from every tier. Returns how many local
    /// entries were removed. A remote failure is handled as in [`delete`](Self::delete).
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        self.engine.invalidate_prefix(prefix).await
    }

    /// Empties one tier. Clearing the remote tier also drops this instance's local copies of
    /// shared values (other instances drop theirs when told); a remote failure is handled as
    /// in [`delete`](Self::delete).
    pub async fn clear(&self, tier: Tier) -> Result<(), Error> {
        self.engine.clear(tier).await
    }

    /// Empties every tier.
    pub async fn clear_all(&self) -> Result<(), Error> {
        self.engine.clear_all().await
    }

    /// Stores `value` with per-call options: the tier and TTL, and
    /// [`encrypt`](LoadOptions::encrypt) (jitter applies to the TTL; the load settings do not
    /// matter to a write). Refused as [`set`](Self::set) is.
    pub async fn set_with<T: SharedValue>(
        &self,
        key: &str,
        value: T,
        options: LoadOptions,
    ) -> Result<(), Error> {
        self.engine.set_with(key, value, &options).await
    }

    /// For a leaked key or a data fix: from now on this instance refuses every value that
    /// `revocation` names, its local tiers drop them (L1, which keeps no write time, drops every
    /// entry), and the remote tier is cleared, which every instance hears as a clear.
    ///
    /// Redis keeps no index by write time or key id, so the whole namespace goes: values
    /// written after the moment are reloaded too. A key id that is still the first of
    /// `cache_encryption_keys` is refused (this instance would refuse its own writes): put a
    /// new key first, then revoke the old one. Other instances learn only of the clear; remove
    /// a leaked key from their configuration as well.
    pub async fn invalidate_for_security(&self, revocation: Revocation) -> Result<(), Error> {
        self.engine.invalidate_for_security(revocation).await
    }

    /// Removes expired entries (past their fail-safe period, where they have one) from L1 and
    /// L2 so that they stop holding capacity; returns how many. The optimizer's background
    /// sweeper calls this every `cache_sweep_interval`.
    pub fn sweep_expired(&self) -> u64 {
        self.engine.sweep_expired()
    }

    /// Drops about `fraction` of L1's entries and of L2's bytes, least valuable first (the
    /// eviction policy decides), to give memory back under pressure. Returns how many L1 and
    /// L2 entries went. The remote tier is untouched.
    pub fn shrink(&self, fraction: f64) -> (u64, u64) {
        self.engine.shrink(fraction)
    }

    /// `key` under `tags`: the key to read and write an entry that
    /// [`invalidate_tag`](Self::invalidate_tag) drops for any of its tags. Make it afresh for
    /// each use (it changes when a tag is invalidated).
    ///
    /// ```no_run
    /// # async fn run(cache: perf_core::MultiLevelCache) -> Result<(), perf_core::Error> {
    /// use perf_core::Tier;
    /// let key = cache.tagged_key("ad:7", &["ads", "campaign:3"]).await;
    /// cache.set(&key, "banner".to_string(), Tier::Redis, None).await?;
    /// cache.invalidate_tag("campaign:3").await?; // every instance stops reading it
    /// let key = cache.tagged_key("ad:7", &["ads", "campaign:3"]).await;
    /// assert!(cache.get::<String>(&key, Tier::Redis).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn tagged_key(&self, key: &str, tags: &[&str]) -> String {
        self.engine.tagged_key(key, tags).await
    }

    /// Drops every entry whose key was made by [`tagged_key`](Self::tagged_key) with `tag`,
    /// in every tier and on every instance sharing the remote tier: the tag gets a new
    /// generation.
    ///
    /// While the Redis tier is unavailable this still returns `Ok`: this instance uses the new
    /// generation at once, and the tier drops the old one in Redis and on every instance once
    /// Redis answers again (see [`RemoteTier::replays_failed_changes`](super::RemoteTier)).
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        self.engine.invalidate_tag(tag).await
    }

    // ----- switches and observation -----

    /// Whether the get_or_load family and `#[cache_result]` use the cache (`cache_enabled`).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.engine.is_enabled()
    }

    /// Turns caching through the get_or_load family and `#[cache_result]` on or off (a
    /// benchmark's baseline, or an incident); what is cached stays, and `get`/`set` still work.
    pub fn set_enabled(&self, enabled: bool) {
        self.engine.set_enabled(enabled)
    }

    /// Takes the TTL, fail-safe, timeout, refresh-ahead and jitter defaults from `config`
    /// (`cache_ttl`, `cache_fail_safe_*`, `cache_soft_timeout`, ...), for entries written and
    /// loads started from now on; entries already cached keep their expiry. Errs, changing
    /// nothing, if the settings do not work together.
    pub fn set_defaults(&self, config: &crate::config::CacheConfig) -> Result<(), Error> {
        let defaults = options::Policy::from_config(config);
        defaults.check().map_err(Error::InvalidLoadOptions)?;
        self.engine.set_defaults(defaults);
        Ok(())
    }

    /// The TTL of entries written without one of their own (`cache_ttl`).
    pub fn default_ttl(&self) -> Duration {
        self.engine.defaults().ttl
    }

    /// Every tier's counters and the loaders', since the cache was built. Cheap enough for
    /// every scrape: sums of per-thread counters and the tiers' sizes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), perf_core::Error> {
    /// use perf_core::{MultiLevelCache, PerformanceConfig, Tier};
    ///
    /// let cache = MultiLevelCache::new(&PerformanceConfig::default())?;
    /// for _ in 0..3 {
    ///     let value = cache
    ///         .get_or_load("ad:7", Tier::L2, None, || async { Ok::<_, perf_core::Error>(7u64) })
    ///         .await?;
    ///     assert_eq!(*value, 7);
    /// }
    /// let stats = cache.stats();
    /// // The first call missed both local tiers and ran the loader; the other two hit L1.
    /// assert_eq!((stats.l1.hits, stats.l1.misses), (2, 1));
    /// assert_eq!(stats.l2.misses, 1);
    /// assert_eq!(stats.loads.loader_runs, 1);
    /// assert_eq!(stats.l1.entries, Some(1));
    /// assert!(stats.l2.bytes.is_some_and(|bytes| bytes > 0));
    /// assert_eq!(stats.remote, None); // no remote tier
    /// assert!((stats.hit_rate - 2.0 / 3.0).abs() < 1e-9);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.engine.stats()
    }

    /// Feeds what changed since the last call into the `metrics` facade:
    /// `cache_hits_total` and `cache_misses_total` {tier, operation},
    /// `cache_load_events_total` {event}, `cache_size_bytes` {tier}.
    pub(crate) fn publish_metrics(&self) {
        self.engine.publish_metrics()
    }

    /// The bytes `value` takes in L2 and the remote tier (header and compression included),
    /// or the error a write of it would meet. For sizing `l2_max_bytes`.
    pub fn encoded_len<T: SharedValue>(&self, value: &T) -> Result<usize, Error> {
        self.engine.encoded_len(value)
    }

    /// L2's byte budget.
    pub fn l2_capacity_bytes(&self) -> u64 {
        self.engine.l2_capacity_bytes()
    }

    /// Whether a remote tier was given to the builder; without one, [`Tier::Redis`] stops at
    /// L2.
    pub fn has_remote_tier(&self) -> bool {
        self.engine.has_remote_tier()
    }

    /// The engine, for the macros' support functions and the optimizer's loops.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A handle that does not keep the cache alive (for background loops).
    pub(crate) fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.engine))
    }
}

/// A cache handle that does not keep the cache alive.
#[derive(Clone)]
pub(crate) struct WeakCache(Weak<Engine>);

impl WeakCache {
    pub(crate) fn upgrade(&self) -> Option<MultiLevelCache> {
        self.0.upgrade().map(|engine| MultiLevelCache { engine })
    }
}

impl fmt::Debug for WeakCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakCache")
    }
}
