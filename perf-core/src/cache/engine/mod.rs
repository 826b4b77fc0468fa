//! The cache's engine: what [`MultiLevelCache`](super::MultiLevelCache)'s methods do.
//!
//! `mod.rs` holds the tiers and the plain reads and writes through them, `get.rs` the future
//! of `get`; the rest of a load is in its own files: `load.rs` the entry points, `attempt.rs`
//! a caller's way through a load, `background.rs` loads run in a task, `target.rs` where a load reads and stores,
//! `shared.rs` reads that reach the remote tier and invalidations from other instances,
//! `tags.rs` tag generations, `revoke.rs` security invalidations, `fast.rs` the `#[cache_result]` hit path through the near cache,
//! `traced.rs` the remote tier in profiling spans.

mod attempt;
mod background;
mod fast;
mod get;
mod load;
mod revoke;
mod shared;
mod tags;
mod target;
mod traced;

use std::{fmt, sync::Arc, time::Duration};

pub use self::revoke::Revocation;
pub(crate) use self::{get::Get, load::MAX_BACKGROUND_LOADS};
use super::{
    CacheStats, CacheValue, RemoteTier, SharedValue, Tier,
    changes::Changes,
    clock::ExpiryClock,
    coalesce::Flights,
    codec::{self, Codec},
    entry::{AnyValue, Found, L1Entry, L2Entry, Lookup},
    l1::L1,
    l2::L2,
    options::Policy,
    remote_size::RemoteSize,
    stamp::{self, Age, Stamp},
    stats::{Counters, Event, MetricsPublisher, Op, Sizes},
};
use crate::{Error, error::RemoteError, profiling::Profiling};

/// One cache: its tiers, settings, counters and loads in flight. [`MultiLevelCache`] is an
/// `Arc` of it.
///
/// The `pub(super)` fields are for the cache's own tests, which look inside the tiers; the
/// API in `cache/mod.rs` calls methods only.
///
/// [`MultiLevelCache`]: super::MultiLevelCache
pub(crate) struct Engine {
    pub(super) l1: L1,
    pub(super) l2: L2,
    remote: Option<Arc<dyn RemoteTier>>,
    /// `profiling_enabled`: loads run in spans (the remote tier's calls too, see `traced.rs`).
    pub(super) profiling: Profiling,
    pub(super) codec: Codec,
    /// The configuration's TTL, fail-safe, timeout, refresh and jitter settings; replaced
    /// whole when the configuration changes, so that a load never sees half of each.
    defaults: parking_lot::RwLock<Policy>,
    max_key_bytes: usize,
    pub(super) clock: ExpiryClock,
    pub(super) counters: Arc<Counters>,
    pub(super) flights: Flights,
    /// Slots for background refreshes.
    background: Arc<tokio::sync::Semaphore>,
    /// Brackets every change to local copies (a write, a delete, another instance's
    /// invalidation), so that a read copying a value up a tier meanwhile gives its copy back
    /// (see `changes.rs`).
    changes: Changes,
    publisher: MetricsPublisher,
    /// The remote tier's bytes, sampled every few seconds when metrics are published.
    remote_size: RemoteSize,
    /// `cache_enabled`: when off, the get_or_load family and `#[cache_result]` call straight
    /// through to their loaders.
    enabled: std::sync::atomic::AtomicBool,
}

/// What an engine is built from: the configuration's numbers, resolved by the builder.
pub(crate) struct Parts {
    pub(crate) l1: L1,
    pub(crate) l2: L2,
    pub(crate) remote: Option<Arc<dyn RemoteTier>>,
    pub(crate) profiling: Profiling,
    pub(crate) codec: Codec,
    pub(crate) defaults: Policy,
    pub(crate) max_key_bytes: usize,
    pub(crate) clock: ExpiryClock,
    pub(crate) counters: Arc<Counters>,
    pub(crate) enabled: bool,
}

impl Engine {
    /// The engine, subscribed to the remote tier's invalidations.
    pub(crate) fn start(parts: Parts) -> Arc<Self> {
        let engine = Arc::new(Engine {
            l1: parts.l1,
            l2: parts.l2,
            remote: parts
                .remote
                .map(|tier| traced::Traced::wrap(tier, parts.profiling.clone())),
            profiling: parts.profiling,
            codec: parts.codec,
            defaults: parking_lot::RwLock::new(parts.defaults),
            max_key_bytes: parts.max_key_bytes,
            clock: parts.clock,
            counters: parts.counters,
            flights: Flights::default(),
            background: Arc::new(tokio::sync::Semaphore::new(MAX_BACKGROUND_LOADS)),
            changes: Changes::new(),
            publisher: MetricsPublisher::default(),
            remote_size: RemoteSize::default(),
            enabled: std::sync::atomic::AtomicBool::new(parts.enabled),
        });
        if let Some(remote) = &engine.remote {
            remote.subscribe(shared::invalidation_sink(Arc::downgrade(&engine)));
        }
        engine
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLevelCache")
            .field("l1_entries", &self.l1.len())
            .field("l2_bytes", &self.l2.bytes())
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// A validated write: the key is within its limit and the lifetime is known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WritePlan {
    /// The local lifetime (`shared` is set when the value is stored).
    pub(super) stamp: Stamp,
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

impl Engine {
    // ----- reads -----

    #[inline]
    pub(crate) fn get<'a, T: SharedValue>(&'a self, key: &'a str, tier: Tier) -> Get<'a, T> {
        Get::new(self, key, tier)
    }

    #[inline]
    pub(crate) fn get_l1_local<T: CacheValue>(&self, key: &str) -> Result<Option<Arc<T>>, Error> {
        self.check_key(key)?;
        Ok(self.l1_lookup(key, Op::Get))
    }

    // ----- writes -----

    pub(crate) async fn set<T: SharedValue>(
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

    pub(crate) async fn set_with<T: SharedValue>(
        &self,
        key: &str,
        value: T,
        options: &super::LoadOptions,
    ) -> Result<(), Error> {
        let policy = options.resolve(&self.defaults())?;
        let plan = self.plan_with(key, policy)?;
        self.store(key, Arc::new(value), self.effective(policy.tier), &plan)
            .await
    }

    pub(crate) fn set_l1_local<T: CacheValue>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let plan = self.plan_write(key, ttl)?;
        self.insert_l1_only(key, Arc::new(value), plan.stamp);
        Ok(())
    }

    pub(crate) fn get_local<T: SharedValue>(
        &self,
        key: &str,
        tier: Tier,
    ) -> Result<Option<Arc<T>>, Error> {
        self.check_key(key)?;
        Ok(self.local_lookup(key, tier, Op::Get))
    }

    pub(crate) fn set_local<T: SharedValue>(
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

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.check_key(key)?;
        let (in_l1, in_l2) = {
            let _changing = self.changes.key(key);
            (self.l1.remove(key), self.l2.remove(key))
        };
        self.count_removals(u64::from(in_l1), u64::from(in_l2));
        if let Some(remote) = &self.remote {
            let removed = remote.delete(key).await;
            if removed.is_ok() {
                self.counters.record(Tier::Redis, Event::Removal);
            }
            self.removal_outcome(remote.as_ref(), removed)?;
        }
        Ok(in_l1 || in_l2)
    }

    pub(crate) async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let (l1, l2) = {
            let _changing = self.changes.all();
            (
                self.l1.remove_where(|key, _| key.starts_with(prefix)),
                self.l2.remove_where(|key, _| key.starts_with(prefix)),
            )
        };
        self.count_removals(l1, l2);
        if let Some(remote) = &self.remote {
            let removed = remote.invalidate_prefix(prefix).await;
            if let Ok(n) = &removed {
                self.counters.record_n(Tier::Redis, Event::Removal, *n);
            }
            self.removal_outcome(remote.as_ref(), removed)?;
        }
        Ok(l1 + l2)
    }

    pub(crate) async fn clear(&self, tier: Tier) -> Result<(), Error> {
        match tier {
            Tier::L1 => self.count_removals(self.l1.clear(), 0),
            Tier::L2 => self.count_removals(0, self.l2.clear()),
            Tier::Redis => {
                let (l1, l2) = {
                    let _changing = self.changes.all();
                    (
                        self.l1.remove_where(|_, entry| entry.stamp.shared),
                        self.l2.remove_where(|_, entry| entry.stamp.shared),
                    )
                };
                self.count_removals(l1, l2);
                if let Some(remote) = &self.remote {
                    let cleared = remote.clear().await;
                    self.removal_outcome(remote.as_ref(), cleared)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn clear_all(&self) -> Result<(), Error> {
        for tier in Tier::ALL {
            self.clear(tier).await?;
        }
        Ok(())
    }

    pub(crate) fn sweep_expired(&self) -> u64 {
        let now = self.clock.now();
        self.flights.sweep(now);
        let l1 = self.l1.remove_where(|_, e| e.stamp.stale_until <= now);
        let l2 = self.l2.remove_where(|_, e| e.stamp.stale_until <= now);
        let counters = &self.counters;
        counters.record_n(Tier::L1, Event::Expiration, l1);
        counters.record_n(Tier::L2, Event::Expiration, l2);
        l1 + l2
    }

    pub(crate) fn shrink(&self, fraction: f64) -> (u64, u64) {
        (self.l1.shrink(fraction), self.l2.shrink(fraction))
    }

    #[inline]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// The settings a load or write without its own starts from.
    pub(crate) fn defaults(&self) -> Policy {
        *self.defaults.read()
    }

    /// New defaults, for loads and writes that start from now on.
    pub(crate) fn set_defaults(&self, defaults: Policy) {
        *self.defaults.write() = defaults;
    }

    // ----- observation -----

    pub(crate) fn stats(&self) -> CacheStats {
        let counters = &self.counters;
        CacheStats::new(
            counters.tier_stats(Tier::L1, Some(self.l1.len()), None),
            counters.tier_stats(Tier::L2, Some(self.l2.len()), Some(self.l2.bytes())),
            self.remote
                .as_ref()
                .map(|_| counters.tier_stats(Tier::Redis, None, None)),
            counters.load_stats(self.flights.in_flight()),
        )
    }

    pub(crate) fn publish_metrics(&self) {
        let tiers: &[Tier] = if self.remote.is_some() {
            &Tier::ALL
        } else {
            &Tier::ALL[..2]
        };
        let sizes = Sizes {
            l1: self.l1.len().saturating_mul(super::L1_ENTRY_BYTES_ESTIMATE),
            l2: self.l2.bytes(),
            redis: self.remote_size.latest(),
        };
        self.publisher.publish(&self.counters, tiers, sizes);
        if let Some(remote) = &self.remote {
            self.remote_size.sample_if_due(remote);
        }
        super::memoized::publish();
    }

    pub(crate) fn encoded_len<T: SharedValue>(&self, value: &T) -> Result<usize, Error> {
        let times = codec::UnixTimes::default();
        Ok(self
            .codec
            .encode(value, times, "", codec::Seal::Default)?
            .len())
    }

    pub(crate) fn l2_capacity_bytes(&self) -> u64 {
        self.l2.capacity()
    }

    /// The `profiling_enabled` switch this cache was built with (its optimizer's).
    pub(crate) fn profiling(&self) -> &Profiling {
        &self.profiling
    }

    pub(crate) fn has_remote_tier(&self) -> bool {
        self.remote.is_some()
    }

    // ----- internals -----

    /// `Tier::Redis` without a remote tier means the deepest tier there is.
    #[inline]
    fn effective(&self, tier: Tier) -> Tier {
        if tier == Tier::Redis && self.remote.is_none() {
            Tier::L2
        } else {
            tier
        }
    }

    #[inline]
    fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.len() > self.max_key_bytes {
            return Err(Error::KeyTooLong {
                len: key.len(),
                limit: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// A write with the configuration's settings and `ttl` (default `cache_ttl`).
    pub(super) fn plan_write(&self, key: &str, ttl: Option<Duration>) -> Result<WritePlan, Error> {
        let mut policy = self.defaults();
        policy.ttl = ttl.unwrap_or(policy.ttl);
        self.plan_with(key, policy)
    }

    fn plan_with(&self, key: &str, policy: Policy) -> Result<WritePlan, Error> {
        self.check_key(key)?;
        if policy.seal == codec::Seal::Encrypt && self.codec.ring.is_none() {
            return Err(Error::NoEncryptionKeys);
        }
        if policy.ttl.is_zero() {
            return Err(Error::ZeroTtl);
        }
        let ttl = policy.jittered_ttl();
        let planned_at = self.clock.now();
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

    #[inline]
    fn l1_lookup<T: CacheValue>(&self, key: &str, op: Op) -> Option<Arc<T>> {
        let counters = &self.counters;
        match self.l1.get::<T>(key, &self.clock, counters) {
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
        let counters = &self.counters;
        let mark = self.changes.mark(key);
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
            if !self.changes.unchanged(key, mark) {
                let copy: AnyValue = value.clone();
                self.l1.remove_value(key, &copy);
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
        let entry = self.l2.get(key)?;
        let Some(age) = entry.stamp.age(&self.clock) else {
            if self.l2.remove_if(key, |e| !e.stamp.is_kept(&self.clock)) {
                self.counters.record(Tier::L2, Event::Expiration);
            }
            return None;
        };
        match self.codec.decode::<T>(&entry.bytes, key) {
            Ok(decoded) => Some((decoded.value, entry.stamp, age)),
            // Another call site's value of another type under this key: a miss, left alone.
            Err(error @ codec::DecodeError::Payload(_)) => {
                tracing::debug!(key, %error, "L2 entry holds another type; a miss");
                self.counters.record(Tier::L2, Event::TypeMismatch);
                None
            }
            Err(error) => {
                tracing::debug!(key, %error, "L2 entry does not decode; removed");
                self.counters.record(Tier::L2, Event::DecodeError);
                self.l2
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
        let encoded = self.store_local(key, value, tier, plan)?;
        if let (Tier::Redis, Some(remote), Some(bytes)) = (tier, &self.remote, encoded) {
            remote
                .set(key, &bytes, plan.remote_ttl())
                .await
                .map_err(|e| self.remote_failed(e))?;
            self.counters.record(Tier::Redis, Event::Insert);
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
        if tier == Tier::L1 {
            self.insert_l1_only(key, value, plan.stamp);
            return Ok(None);
        }
        let times = plan.stamp.unix_times(plan.planned_at);
        let bytes: Arc<[u8]> = self
            .codec
            .encode(&*value, times, key, plan.policy.seal)?
            .into();
        if let Err(heavy) = self.l2.check_fits(key, &bytes) {
            self.counters.record(Tier::L2, Event::Refused);
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
        let _changing = self.changes.key(key);
        self.insert_l1(key, value, stamp);
        self.insert_l2(key, Arc::clone(&bytes), stamp);
        Ok(Some(bytes))
    }

    fn insert_l1(&self, key: &str, value: AnyValue, stamp: Stamp) {
        self.l1.store(key, L1Entry { value, stamp }, &self.clock);
        self.counters.record(Tier::L1, Event::Insert);
    }

    /// A write that stops at L1 drops the local L2 copy, which would otherwise resurface
    /// with an older value once the L1 copy expires or is evicted.
    fn insert_l1_only(&self, key: &str, value: AnyValue, stamp: Stamp) {
        let _changing = self.changes.key(key);
        self.insert_l1(
            key,
            value,
            Stamp {
                shared: false,
                ..stamp
            },
        );
        self.l2.remove(key);
    }

    fn insert_l2(&self, key: &str, bytes: Arc<[u8]>, stamp: Stamp) {
        let entry = L2Entry { bytes, stamp };
        match self.l2.insert(key, entry) {
            Ok(()) => self.counters.record(Tier::L2, Event::Insert),
            Err(_) => self.counters.record(Tier::L2, Event::Refused),
        }
    }

    /// Counts entries removed on request from L1 and L2.
    fn count_removals(&self, l1: u64, l2: u64) {
        self.counters.record_n(Tier::L1, Event::Removal, l1);
        self.counters.record_n(Tier::L2, Event::Removal, l2);
    }

    /// A failed remote write: the value is local only, and the tier may have queued the
    /// removal of its older value.
    fn remote_failed(&self, error: RemoteError) -> Error {
        self.counters.record(Tier::Redis, Event::Error);
        match &self.remote {
            Some(remote) if remote.replays_failed_changes() => Error::RemoteQueued(error),
            _ => Error::Remote(error),
        }
    }

    /// A remote removal is done once the tier applied it or queued it for its replay.
    fn removal_outcome<T>(
        &self,
        remote: &dyn RemoteTier,
        result: Result<T, RemoteError>,
    ) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err(error) if remote.replays_failed_changes() => {
                self.counters.record(Tier::Redis, Event::Error);
                tracing::debug!(%error, "remote removal queued for when the tier is back");
                Ok(())
            }
            Err(error) => Err(self.remote_failed(error)),
        }
    }
}
