//! L2: encoded bytes in process, bounded by bytes.

use std::sync::Arc;

use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter, sync::Cache};

use super::Tier;
use super::codec::MAX_ENVELOPE;
use super::entry::L2Entry;
use super::quick::{CountEvictions, remove_counting, shrink_counting};
use super::stamp::Stamp;
use super::stats::Counters;
use crate::config::{CacheConfig, ConfigError, FieldError};

/// An entry weighs its key, its encoded bytes and a fixed overhead.
#[derive(Clone)]
struct ByteWeighter;

impl Weighter<Box<str>, L2Entry> for ByteWeighter {
    fn weight(&self, key: &Box<str>, entry: &L2Entry) -> u64 {
        entry_weight(key.len(), entry.bytes.len())
    }
}

pub(crate) fn entry_weight(key_len: usize, value_len: usize) -> u64 {
    (key_len + value_len) as u64 + ENTRY_OVERHEAD
}

/// Bytes an L2 entry costs beyond its key and encoded value: the entry struct and its slot in
/// the cache's table.
const ENTRY_OVERHEAD: u64 = 64;

/// The weight of the largest entry L2 must accept: the longest key and the largest value
/// in its envelope.
pub(crate) fn largest_entry(config: &CacheConfig) -> u64 {
    config
        .max_key_bytes
        .saturating_add(config.max_value_bytes)
        .saturating_add(MAX_ENVELOPE as u64)
        .saturating_add(ENTRY_OVERHEAD)
}

/// L2's budget must hold its largest entry. Checked here rather than with the other fields
/// because only the cache knows the encoding's header and its own overhead.
pub(crate) fn check_budget(config: &CacheConfig) -> Result<(), ConfigError> {
    let largest = largest_entry(config);
    if config.l2_max_bytes >= largest {
        return Ok(());
    }
    Err(ConfigError::Invalid(vec![FieldError {
        field: "l2_max_bytes",
        reason: format!(
            "must hold at least one entry of max_key_bytes + max_value_bytes + overhead \
             = {largest} bytes"
        ),
    }]))
}

pub(crate) struct L2 {
    map: Cache<Box<str>, L2Entry, ByteWeighter, DefaultHashBuilder, CountEvictions>,
}

/// The entry could never fit: it is heavier than one shard's share of the budget.
#[derive(Debug)]
pub(crate) struct TooHeavy {
    pub(crate) weight: u64,
    pub(crate) shard_capacity: u64,
}

impl L2 {
    /// `largest_entry` is the heaviest entry L2 must accept; shards are sized so that one fits,
    /// because quick_cache splits the budget across shards and cannot hold an item larger than
    /// a shard's share.
    pub(crate) fn new(max_bytes: u64, largest_entry: u64, counters: Arc<Counters>) -> Self {
        let wanted_shards = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
        let fitting_shards = (max_bytes / largest_entry.max(1)).max(1);
        // Round down to a power of two, which quick_cache would otherwise round up to.
        let shards = prev_power_of_two(fitting_shards.min(wanted_shards as u64)) as usize;
        let estimated_items = usize::try_from(max_bytes / 1024)
            .unwrap_or(usize::MAX)
            .max(64);
        let options = OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(max_bytes)
            .estimated_items_capacity(estimated_items)
            .build();
        let lifecycle = CountEvictions {
            counters,
            tier: Tier::L2,
        };
        let map = match options {
            Ok(options) => Cache::with_options(
                options,
                ByteWeighter,
                DefaultHashBuilder::default(),
                lifecycle,
            ),
            // Only unset fields fail to build, and all are set above.
            Err(_) => Cache::with(
                estimated_items,
                max_bytes,
                ByteWeighter,
                DefaultHashBuilder::default(),
                lifecycle,
            ),
        };
        Self { map }
    }

    pub(crate) fn get(&self, key: &str) -> Option<L2Entry> {
        self.map.get(key)
    }

    /// Whether an entry of this key and value could be held at all.
    pub(crate) fn check_fits(&self, key: &str, bytes: &[u8]) -> Result<(), TooHeavy> {
        let weight = entry_weight(key.len(), bytes.len());
        let shard_capacity = self.shard_capacity();
        if weight > shard_capacity {
            return Err(TooHeavy {
                weight,
                shard_capacity,
            });
        }
        Ok(())
    }

    pub(crate) fn insert(&self, key: &str, entry: L2Entry) -> Result<(), TooHeavy> {
        self.check_fits(key, &entry.bytes)?;
        self.map.insert(key.into(), entry);
        Ok(())
    }

    /// Removes `key` if `f` says so.
    pub(crate) fn remove_if(&self, key: &str, f: impl FnOnce(&L2Entry) -> bool) -> bool {
        self.map.remove_if(key, f).is_some()
    }

    /// Gives the entry at `key`, if any, a new lifetime.
    pub(crate) fn restamp(&self, key: &str, stamp: Stamp) {
        if let Some(mut entry) = self.map.get(key) {
            entry.stamp = stamp;
            self.map.insert(key.into(), entry);
        }
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    pub(crate) fn remove_where(&self, remove: impl Fn(&str, &L2Entry) -> bool) -> u64 {
        remove_counting(&self.map, remove)
    }

    /// Removes every entry; returns about how many (entries inserted meanwhile may count).
    pub(crate) fn clear(&self) -> u64 {
        let held = self.len();
        self.map.clear();
        held
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Evicts about `fraction` of the bytes held; returns how many entries went.
    pub(crate) fn shrink(&self, fraction: f64) -> u64 {
        shrink_counting(&self.map, fraction)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.map.weight()
    }

    /// The heaviest entry one shard, and so L2, can hold.
    pub(crate) fn shard_capacity(&self) -> u64 {
        self.map.shard_capacity()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.map.capacity()
    }
}

fn prev_power_of_two(n: u64) -> u64 {
    if n <= 1 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, MultiLevelCache, PerformanceConfig};

    #[test]
    fn the_budget_must_hold_the_largest_value() {
        let config = PerformanceConfig {
            cache: CacheConfig {
                l2_max_bytes: 1024,
                max_value_bytes: 4096,
                ..CacheConfig::default()
            },
            ..PerformanceConfig::default()
        };
        let Err(Error::Config(ConfigError::Invalid(errors))) = MultiLevelCache::new(&config) else {
            panic!("expected an invalid configuration");
        };
        assert_eq!(errors[0].field, "l2_max_bytes");
        check_budget(&CacheConfig::default()).expect("the defaults fit");
    }
}
