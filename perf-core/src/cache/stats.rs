//! Cache statistics: cheap striped counters on the hot path, snapshots for readers.

use serde::Serialize;

use super::Tier;
use crate::{
    metrics::{
        CACHE_HITS_TOTAL, CACHE_LOAD_EVENTS_TOTAL, CACHE_MISSES_TOTAL, CACHE_OPERATIONS_TOTAL,
        CACHE_SIZE_BYTES, labels,
    },
    striped::{StripedCounters, ThreadStripe},
};

/// The read operation a hit or miss is counted under (the `operation` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get = 0,
    GetOrLoad = 1,
    GetMany = 2,
}

impl Op {
    const ALL: [Op; 3] = [Op::Get, Op::GetOrLoad, Op::GetMany];

    fn label(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetOrLoad => "get_or_load",
            Op::GetMany => "get_many",
        }
    }
}

/// Per-tier events. Hits and misses are kept per operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Hit(Op),
    Miss(Op),
    Insert,
    Eviction,
    Expiration,
    DecodeError,
    TypeMismatch,
    Refused,
    Error,
    /// A remote read's copy taken back because an invalidation raced the read.
    RacedInvalidation,
    /// Entries removed on request: deleted, invalidated, cleared.
    Removal,
}

const OPS: usize = Op::ALL.len();
const PER_TIER: usize = 2 * OPS + 9;
const TIERS: usize = 3;
const LOAD_COUNTERS: usize = LoadEvent::ALL.len();
const SLOTS: usize = PER_TIER * TIERS + LOAD_COUNTERS;

impl Event {
    fn slot(self, tier: Tier) -> usize {
        let within = match self {
            Event::Hit(op) => op as usize,
            Event::Miss(op) => OPS + op as usize,
            Event::Insert => 2 * OPS,
            Event::Eviction => 2 * OPS + 1,
            Event::Expiration => 2 * OPS + 2,
            Event::DecodeError => 2 * OPS + 3,
            Event::TypeMismatch => 2 * OPS + 4,
            Event::Refused => 2 * OPS + 5,
            Event::Error => 2 * OPS + 6,
            Event::RacedInvalidation => 2 * OPS + 7,
            Event::Removal => 2 * OPS + 8,
        };
        tier as usize * PER_TIER + within
    }
}

/// Loader events, not tied to a tier.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LoadEvent {
    /// A loader ran.
    Run = 0,
    /// A caller received another caller's loaded value instead of running its own loader.
    Coalesced = 1,
    /// A loader returned an error.
    Failed = 2,
    /// A stale value was returned in place of a failed or slow load (fail-safe).
    StaleServed = 3,
    /// A caller stopped waiting at the soft timeout.
    SoftTimeout = 4,
    /// A caller stopped waiting at the hard timeout, or a detached load was given up there.
    HardTimeout = 5,
    /// A reload of a value past its refresh point started.
    Refresh = 6,
    /// A caller received the failure of a load it did not run.
    SharedFailure = 7,
}

impl LoadEvent {
    pub(crate) const ALL: [LoadEvent; 8] = [
        LoadEvent::Run,
        LoadEvent::Coalesced,
        LoadEvent::Failed,
        LoadEvent::StaleServed,
        LoadEvent::SoftTimeout,
        LoadEvent::HardTimeout,
        LoadEvent::Refresh,
        LoadEvent::SharedFailure,
    ];

    /// The `event` label of `cache_load_events_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            LoadEvent::Run => "loader_run",
            LoadEvent::Coalesced => "coalesced",
            LoadEvent::Failed => "loader_error",
            LoadEvent::StaleServed => "stale_served",
            LoadEvent::SoftTimeout => "soft_timeout",
            LoadEvent::HardTimeout => "hard_timeout",
            LoadEvent::Refresh => "refresh",
            LoadEvent::SharedFailure => "shared_failure",
        }
    }
}

/// All counters of one cache.
#[derive(Default)]
pub(crate) struct Counters {
    slots: StripedCounters<SLOTS>,
}

impl Counters {
    #[inline]
    pub(crate) fn record(&self, tier: Tier, event: Event) {
        self.add_slot(event.slot(tier), 1);
    }

    /// [`record`](Self::record), on the stripe the caller read.
    #[inline]
    pub(crate) fn record_on(&self, stripe: ThreadStripe, tier: Tier, event: Event) {
        self.slots.add_on(stripe, event.slot(tier), 1);
    }

    pub(crate) fn record_n(&self, tier: Tier, event: Event, n: u64) {
        self.add_slot(event.slot(tier), n);
    }

    #[inline]
    pub(crate) fn record_load(&self, event: LoadEvent) {
        self.add_slot(PER_TIER * TIERS + event as usize, 1);
    }

    #[inline]
    fn add_slot(&self, slot: usize, n: u64) {
        self.slots.add(slot, n);
    }

    fn sum_slot(&self, slot: usize) -> u64 {
        self.slots.sum(slot)
    }

    pub(crate) fn count(&self, tier: Tier, event: Event) -> u64 {
        self.sum_slot(event.slot(tier))
    }

    fn count_load(&self, event: LoadEvent) -> u64 {
        self.sum_slot(PER_TIER * TIERS + event as usize)
    }

    /// The counters of one tier; `entries` and `bytes` come from the tier itself.
    pub(crate) fn tier_stats(
        &self,
        tier: Tier,
        entries: Option<u64>,
        bytes: Option<u64>,
    ) -> TierStats {
        let hits = Op::ALL
            .iter()
            .map(|&op| self.count(tier, Event::Hit(op)))
            .sum();
        let misses = Op::ALL
            .iter()
            .map(|&op| self.count(tier, Event::Miss(op)))
            .sum();
        TierStats {
            hits,
            misses,
            hit_rate: ratio(hits, hits + misses),
            inserts: self.count(tier, Event::Insert),
            evictions: self.count(tier, Event::Eviction),
            expirations: self.count(tier, Event::Expiration),
            decode_errors: self.count(tier, Event::DecodeError),
            type_mismatches: self.count(tier, Event::TypeMismatch),
            refused: self.count(tier, Event::Refused),
            errors: self.count(tier, Event::Error),
            raced_invalidations: self.count(tier, Event::RacedInvalidation),
            removals: self.count(tier, Event::Removal),
            entries,
            bytes,
        }
    }

    pub(crate) fn load_stats(&self, in_flight: u64) -> LoadStats {
        LoadStats {
            loader_runs: self.count_load(LoadEvent::Run),
            coalesced: self.count_load(LoadEvent::Coalesced),
            loader_errors: self.count_load(LoadEvent::Failed),
            stale_served: self.count_load(LoadEvent::StaleServed),
            soft_timeouts: self.count_load(LoadEvent::SoftTimeout),
            hard_timeouts: self.count_load(LoadEvent::HardTimeout),
            refreshes: self.count_load(LoadEvent::Refresh),
            shared_failures: self.count_load(LoadEvent::SharedFailure),
            in_flight,
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Statistics of one tier, counted since the cache was built.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TierStats {
    /// Lookups this tier answered.
    pub hits: u64,
    /// Lookups that reached this tier and found nothing usable.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 when there were no lookups.
    pub hit_rate: f64,
    /// Entries stored: writes, loaded values, and hits from a lower tier copied into this one.
    pub inserts: u64,
    /// Entries pushed out to make room.
    pub evictions: u64,
    /// Entries found or swept out past their TTL.
    pub expirations: u64,
    /// Stored bytes that did not decode (counted as misses, and removed).
    pub decode_errors: u64,
    /// Entries read back as a type other than the one stored (counted as misses).
    pub type_mismatches: u64,
    /// Values not stored: in L2, entries larger than a shard holds; in L1, loads whose key,
    /// TTL or value the cache refused (their loaders ran uncached).
    pub refused: u64,
    /// Calls to the tier that failed (the remote tier only; reads count as misses too).
    pub errors: u64,
    /// Values read from this tier whose copies in the tiers above were dropped, because the
    /// key was written or invalidated while the read ran.
    pub raced_invalidations: u64,
    /// Entries removed on request: deleted, invalidated (by prefix, or by another instance's
    /// write) or cleared. In the remote tier, a delete counts once whether or not
    /// the key existed, and a clear is not counted (Redis does not say how many keys went).
    pub removals: u64,
    /// Entries held, where the tier can count them (the remote tier does not).
    pub entries: Option<u64>,
    /// Bytes held, for byte-bounded tiers. L1 holds typed values of unknown size.
    pub bytes: Option<u64>,
}

/// Statistics of the get_or_load family's loaders (and `#[cache_result]`'s), counted since the
/// cache was built; `cache_load_events_total` publishes the same counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LoadStats {
    /// Loader calls made.
    pub loader_runs: u64,
    /// Callers served by a loader another caller was already running.
    pub coalesced: u64,
    /// Loader calls that returned an error (not cached).
    pub loader_errors: u64,
    /// Stale values returned in place of a failed or slow load (fail-safe).
    pub stale_served: u64,
    /// Callers that stopped waiting for a load at the soft timeout.
    pub soft_timeouts: u64,
    /// Callers that stopped waiting at the hard timeout, and detached loads given up there.
    pub hard_timeouts: u64,
    /// Reloads of values past their refresh point (refresh-ahead).
    pub refreshes: u64,
    /// Callers that received the failure of a load another caller ran.
    pub shared_failures: u64,
    /// Keys being loaded right now.
    pub in_flight: u64,
}

/// A snapshot of the whole cache's statistics, from [`MultiLevelCache::stats`](super::MultiLevelCache::stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// The typed in-process tier. Every lookup starts here, so its hits and misses together
    /// are all lookups.
    pub l1: TierStats,
    /// The encoded in-process tier: lookups L1 missed that reached it.
    pub l2: TierStats,
    /// Present when a remote tier is configured.
    pub remote: Option<TierStats>,
    /// What the loaders did.
    pub loads: LoadStats,
    /// Lookups answered by any tier, over all lookups.
    pub hit_rate: f64,
}

impl CacheStats {
    pub(crate) fn new(
        l1: TierStats,
        l2: TierStats,
        remote: Option<TierStats>,
        loads: LoadStats,
    ) -> Self {
        // Every lookup starts at L1, so L1's lookups are all lookups.
        let answered = l1.hits + l2.hits + remote.as_ref().map_or(0, |r| r.hits);
        let hit_rate = ratio(answered, l1.hits + l1.misses);
        Self {
            l1,
            l2,
            remote,
            loads,
            hit_rate,
        }
    }
}

/// Feeds the counters into the `metrics` facade.
///
/// The hot path only bumps striped counters; this publishes what changed since the last call
/// (the optimizer's background publisher calls it every second, and its `publish_metrics` on
/// demand).
/// Publishing deltas rather than totals keeps several caches in one process additive, and
/// resolving handles at publish time works with a recorder installed after the cache was built.
#[derive(Default)]
pub(crate) struct MetricsPublisher {
    published: parking_lot::Mutex<Vec<u64>>,
}

/// The `operation` labels of `cache_operations_total`, and the events they count.
const OPERATIONS: [(Event, &str); 4] = [
    (Event::Insert, "insert"),
    (Event::Eviction, "eviction"),
    (Event::Expiration, "expiration"),
    (Event::Removal, "removal"),
];

/// What a tier holds now, for `cache_size_bytes`: `None` where it is not known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub(crate) l1: u64,
    pub(crate) l2: u64,
    pub(crate) redis: Option<u64>,
}

impl MetricsPublisher {
    pub(crate) fn publish(&self, counters: &Counters, tiers: &[Tier], sizes: Sizes) {
        let mut published = self.published.lock();
        published.resize(SLOTS, 0);
        // The change of `slot` since the last call, marked as published.
        let mut delta = |slot: usize| {
            let now = counters.sum_slot(slot);
            let delta = now.saturating_sub(published[slot]);
            published[slot] = published[slot].max(now);
            delta
        };
        for &tier in tiers {
            let tier_label = tier.as_str();
            for op in Op::ALL {
                for (event, name) in [
                    (Event::Hit(op), CACHE_HITS_TOTAL),
                    (Event::Miss(op), CACHE_MISSES_TOTAL),
                ] {
                    let delta = delta(event.slot(tier));
                    if delta > 0 {
                        metrics::counter!(crate::metrics::name(name), labels::TIER => tier_label, labels::OPERATION => op.label())
                            .increment(delta);
                    }
                }
            }
            for (event, operation) in OPERATIONS {
                let delta = delta(event.slot(tier));
                if delta > 0 {
                    metrics::counter!(crate::metrics::name(CACHE_OPERATIONS_TOTAL), labels::TIER => tier_label, labels::OPERATION => operation)
                        .increment(delta);
                }
            }
        }
        for event in LoadEvent::ALL {
            let delta = delta(PER_TIER * TIERS + event as usize);
            if delta > 0 {
                metrics::counter!(crate::metrics::name(CACHE_LOAD_EVENTS_TOTAL), labels::EVENT => event.label())
                    .increment(delta);
            }
        }
        let size = |tier: Tier, bytes: u64| {
            metrics::gauge!(crate::metrics::name(CACHE_SIZE_BYTES), labels::TIER => tier.as_str())
                .set(bytes as f64);
        };
        size(Tier::L1, sizes.l1);
        size(Tier::L2, sizes.l2);
        if let Some(redis) = sizes.redis {
            size(Tier::Redis, redis);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_is_distinct() {
        let events = [
            Event::Hit(Op::Get),
            Event::Hit(Op::GetOrLoad),
            Event::Hit(Op::GetMany),
            Event::Miss(Op::Get),
            Event::Miss(Op::GetOrLoad),
            Event::Miss(Op::GetMany),
            Event::Insert,
            Event::Eviction,
            Event::Expiration,
            Event::DecodeError,
            Event::TypeMismatch,
            Event::Refused,
            Event::Error,
            Event::RacedInvalidation,
            Event::Removal,
        ];
        let mut slots: Vec<_> = [Tier::L1, Tier::L2, Tier::Redis]
            .iter()
            .flat_map(|&t| events.iter().map(move |e| e.slot(t)))
            .collect();
        slots.extend((0..LOAD_COUNTERS).map(|i| PER_TIER * TIERS + i));
        let count = slots.len();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), count);
        assert_eq!(count, SLOTS);
    }
}
