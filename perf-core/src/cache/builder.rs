//! [`CacheBuilder`]: the configuration's numbers turned into tiers.

use std::sync::Arc;

use super::{
    Clock, MultiLevelCache, RemoteTier,
    clock::ExpiryClock,
    codec::Codec,
    engine::{Engine, Parts},
    l1::L1,
    l2::{self, L2},
    options::Policy,
    protect::KeyRing,
    stats::Counters,
};
use crate::{
    Error,
    config::{ConfigError, FieldError, PerformanceConfig},
    profiling::Profiling,
};

/// Builds a [`MultiLevelCache`].
#[must_use]
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    config: PerformanceConfig,
    remote: Option<Arc<dyn RemoteTier>>,
    clock: Option<Clock>,
    profiling: Profiling,
}

impl CacheBuilder {
    pub(super) fn new(config: &PerformanceConfig) -> Self {
        Self {
            config: config.clone(),
            remote: None,
            clock: None,
            profiling: Profiling::new(config.monitor.profiling_enabled),
        }
    }

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

    /// The optimizer's `profiling_enabled` switch, in place of one of the cache's own.
    pub(crate) fn profiling(mut self, profiling: Profiling) -> Self {
        self.profiling = profiling;
        self
    }

    /// Validates the configuration and builds the cache.
    pub fn build(self) -> Result<MultiLevelCache, Error> {
        self.config.validate()?;
        let config = self.config.cache;
        l2::check_budget(&config)?;
        let counters = Arc::new(Counters::default());
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let namespace: Arc<str> = self
            .remote
            .as_ref()
            .map_or_else(|| Arc::from(""), |remote| Arc::from(remote.namespace()));
        let engine = Engine::start(Parts {
            l1: L1::new(config.max_size, Arc::clone(&counters)),
            l2: L2::new(
                config.l2_max_bytes,
                l2::largest_entry(&config),
                Arc::clone(&counters),
            ),
            remote: self.remote,
            profiling: self.profiling,
            codec: Codec {
                ring: KeyRing::new(&config.encryption_keys, config.value_protection)
                    .map_err(|error| {
                        Error::Config(ConfigError::Invalid(vec![FieldError {
                            field: "cache_encryption_keys",
                            reason: error.to_string(),
                        }]))
                    })?
                    .map(Arc::new),
                namespace,
                ..Codec::plain(
                    as_usize(config.compression_threshold_bytes),
                    config.zstd_level,
                    config.zstd_compress_literals,
                    as_usize(config.max_value_bytes),
                )
            },
            defaults: Policy::from_config(&config),
            max_key_bytes: as_usize(config.max_key_bytes),
            clock: self
                .clock
                .map_or_else(ExpiryClock::real, ExpiryClock::exact),
            counters,
            enabled: config.enabled,
        });
        Ok(MultiLevelCache { engine })
    }
}
