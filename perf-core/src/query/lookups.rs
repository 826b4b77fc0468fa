//! Hits and misses of the query result cache, counted per thread and given to the recorder
//! when metrics are flushed ([`crate::metrics::flush`]).

use parking_lot::Mutex;

use crate::{
    metrics::{self, Batched, QUERY_CACHE_HITS_TOTAL, QUERY_CACHE_MISSES_TOTAL},
    striped::StripedCounters,
};

const HIT: usize = 0;
const MISS: usize = 1;

/// One query optimizer's result cache lookups.
#[derive(Default)]
pub(super) struct Lookups {
    counts: StripedCounters<2>,
    /// What the recorder has been given so far: hits, misses.
    published: Mutex<[u64; 2]>,
}

impl Lookups {
    /// Counts one lookup: answered from the cache (`hit`) or not.
    pub(super) fn record(&self, hit: bool) {
        self.counts.add(if hit { HIT } else { MISS }, 1);
    }

    /// `(hits, misses)` so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.counts.sum(HIT), self.counts.sum(MISS))
    }
}

impl Batched for Lookups {
    /// Gives the recorder what changed since the last flush. Both series are given even when
    /// nothing changed (an increment of 0), so that a dashboard's rate reads 0 rather than no
    /// data before the first lookup.
    fn flush(&self) {
        let mut published = self.published.lock();
        for (slot, name) in [
            (HIT, QUERY_CACHE_HITS_TOTAL),
            (MISS, QUERY_CACHE_MISSES_TOTAL),
        ] {
            let now = self.counts.sum(slot);
            let delta = now.saturating_sub(published[slot]);
            ::metrics::counter!(metrics::name(name)).increment(delta);
            published[slot] = now;
        }
    }
}
