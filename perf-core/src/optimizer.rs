//! [`PerformanceOptimizer`]: one of each component, the process-wide instance, background loops.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::RwLock;

use crate::{
    Error, InstallError,
    alerts::{self, Alert, Recommendation, Snapshot},
    cache::{CacheBuilder, MultiLevelCache, RemoteTier, WeakCache},
    config::{ConfigError, FieldError, PerformanceConfig},
    memory::{CleanupRequest, MemoryManager, UsageSource},
    monitor::Monitor,
    query::QueryOptimizer,
    system::SystemMonitor,
    tasks::TaskManager,
};

/// Owns the configuration and the components. Later components join the cache here.
#[derive(Debug)]
pub struct PerformanceOptimizer {
    config: RwLock<Arc<PerformanceConfig>>,
    cache: MultiLevelCache,
    memory: MemoryManager,
    tasks: TaskManager,
    query: QueryOptimizer,
    monitor: Monitor,
    system: Arc<SystemMonitor>,
    background_started: AtomicBool,
}

/// Builds a [`PerformanceOptimizer`].
#[must_use]
#[derive(Default)]
pub struct OptimizerBuilder {
    config: Option<PerformanceConfig>,
    remote: Option<Arc<dyn RemoteTier>>,
    clock: Option<crate::cache::Clock>,
    memory_source: Option<Box<dyn UsageSource>>,
}

impl std::fmt::Debug for OptimizerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerBuilder")
            .field("config", &self.config)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl OptimizerBuilder {
    /// The configuration (default: [`PerformanceConfig::default`]).
    pub fn config(mut self, config: PerformanceConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The cache's shared tier below L2 (perf-redis's `RedisTier`).
    pub fn remote_tier(mut self, remote: Arc<dyn RemoteTier>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The clock deciding cache expiry; tests pass [`Clock::mock()`](crate::cache::Clock::mock).
    pub fn clock(mut self, clock: crate::cache::Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Where the memory manager gets its samples (default: this process, from the operating
    /// system). Tests pass their own figures.
    pub fn memory_source(mut self, source: impl UsageSource) -> Self {
        self.memory_source = Some(Box::new(source));
        self
    }

    /// Validates the configuration and builds every component.
    pub fn build(self) -> Result<PerformanceOptimizer, Error> {
        let config = self.config.unwrap_or_default();
        let mut cache: CacheBuilder = MultiLevelCache::builder(&config);
        if let Some(remote) = self.remote {
            cache = cache.remote_tier(remote);
        }
        if let Some(clock) = self.clock {
            cache = cache.clock(clock);
        }
        let cache = cache.build()?;
        let memory = match self.memory_source {
            Some(source) => MemoryManager::with_source(&config, source),
            None => MemoryManager::new(&config),
        };
        memory.register_cleanup_hook("cache", cache_cleanup_hook(cache.downgrade()));
        let monitor = Monitor::new(config.monitor.profiling_enabled);
        let tasks = TaskManager::new(&config, &monitor);
        let query = QueryOptimizer::new(&config, cache.clone());
        Ok(PerformanceOptimizer {
            cache,
            memory,
            tasks,
            query,
            monitor,
            system: Arc::new(SystemMonitor::default()),
            config: RwLock::new(Arc::new(config)),
            background_started: AtomicBool::new(false),
        })
    }
}

/// A field that a running optimizer can change: its key, how to take it from a new
/// configuration, and how to give it to its component.
struct HotField {
    field: &'static str,
    copy: fn(&mut PerformanceConfig, &PerformanceConfig),
    apply: fn(&PerformanceOptimizer, &PerformanceConfig) -> Result<(), String>,
}

/// The one declaration of what can change at run time: [`HOT_FIELDS`] lists its keys and
/// [`PerformanceOptimizer::update_config`] applies it, in this order: the one that can fail
/// first, so that a refusal changes nothing.
const HOT: [HotField; 4] = [
    HotField {
        field: "max_workers",
        copy: |to, from| to.tasks.max_workers = from.tasks.max_workers,
        apply: |optimizer, config| {
            (optimizer.tasks)
                .set_max_workers(config.tasks.max_workers)
                .map_err(|error| error.to_string())
        },
    },
    HotField {
        field: "cache_enabled",
        copy: |to, from| to.cache.enabled = from.cache.enabled,
        apply: |optimizer, config| {
            optimizer.cache.set_enabled(config.cache.enabled);
            Ok(())
        },
    },
    HotField {
        field: "task_timeout",
        copy: |to, from| to.tasks.timeout = from.tasks.timeout,
        apply: |optimizer, config| {
            optimizer.tasks.set_default_timeout(config.tasks.timeout);
            Ok(())
        },
    },
    HotField {
        field: "profiling_enabled",
        copy: |to, from| to.monitor.profiling_enabled = from.monitor.profiling_enabled,
        apply: |optimizer, config| {
            optimizer
                .monitor
                .set_profiling(config.monitor.profiling_enabled);
            Ok(())
        },
    },
];

/// The keys of the fields a running optimizer can change
/// ([`PerformanceOptimizer::update_config`]).
pub const HOT_FIELDS: &[&str] = &{
    let mut keys = [""; HOT.len()];
    let mut i = 0;
    while i < HOT.len() {
        keys[i] = HOT[i].field;
        i += 1;
    }
    keys
};

struct Global {
    optimizer: PerformanceOptimizer,
    installed: bool,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// The process-wide optimizer: the installed one, or else a default one built on first use.
///
/// The default instance starts its background loops if it is first used inside a tokio
/// runtime; until then, expired entries are still never served, only swept later.
pub fn global() -> &'static PerformanceOptimizer {
    let global = GLOBAL.get_or_init(|| {
        let optimizer = PerformanceOptimizer::builder()
            .build()
            .expect("the default configuration is valid");
        Global {
            optimizer,
            installed: false,
        }
    });
    let optimizer = &global.optimizer;
    // Checked on every call (macros call this): one relaxed load once the loops run.
    if !optimizer.background_started.load(Ordering::Relaxed)
        && tokio::runtime::Handle::try_current().is_ok()
    {
        // Ignored error: there is a runtime, which is all start_background checks.
        let _ = optimizer.start_background();
    }
    optimizer
}

impl PerformanceOptimizer {
    pub fn builder() -> OptimizerBuilder {
        OptimizerBuilder::default()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<PerformanceConfig> {
        Arc::clone(&self.config.read())
    }

    /// Applies a new configuration to the running components. Only [`HOT_FIELDS`] can change
    /// at run time; a configuration that is invalid, or that changes any other field, is
    /// refused with every offending field named, and nothing changes.
    pub fn update_config(&self, config: PerformanceConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.config.write();
        // What may change is the current configuration with the hot fields taken from the new
        // one; anything else that differs is a cold field.
        let mut allowed = PerformanceConfig::clone(&current);
        for hot in &HOT {
            (hot.copy)(&mut allowed, &config);
        }
        let cold: Vec<FieldError> = allowed
            .changed_fields(&config)
            .into_iter()
            .map(|field| FieldError {
                field,
                reason: "cannot change while running; restart with it".into(),
            })
            .collect();
        if !cold.is_empty() {
            return Err(ConfigError::Invalid(cold));
        }
        for hot in &HOT {
            (hot.apply)(self, &config).map_err(|reason| {
                ConfigError::Invalid(vec![FieldError {
                    field: hot.field,
                    reason,
                }])
            })?;
        }
        *current = Arc::new(config);
        Ok(())
    }

    pub fn cache(&self) -> &MultiLevelCache {
        &self.cache
    }

    /// Query timing, per-shape statistics, the slow-query log and the query result cache.
    pub fn query(&self) -> &QueryOptimizer {
        &self.query
    }

    /// The machine's CPU, memory, disks and network.
    pub fn system(&self) -> &SystemMonitor {
        &self.system
    }

    /// Every component's statistics now, for alerts and the admin API. Samples memory and the
    /// machine: blocking, about a millisecond.
    pub fn snapshot(&self) -> Snapshot {
        let window = self.config().alerts.window;
        let since = std::time::SystemTime::now()
            .checked_sub(window)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let recent_slow_queries = self
            .query
            .slow_queries()
            .iter()
            .filter(|query| query.at >= since)
            .count() as u64;
        Snapshot {
            cache: self.cache.stats(),
            memory: self.memory.usage().ok(),
            tasks: self.tasks.stats(),
            recent_slow_queries,
            system: Some(self.system.sample()),
        }
    }

    /// The alerts the current [`snapshot`](Self::snapshot) raises, most severe first.
    pub fn alerts(&self) -> Vec<Alert> {
        alerts::alerts(&self.snapshot(), &self.config())
    }

    /// What to change, from the current [`snapshot`](Self::snapshot).
    pub fn recommendations(&self) -> Vec<Recommendation> {
        alerts::recommendations(&self.snapshot(), &self.config())
    }

    /// The bounded task pool.
    pub fn tasks(&self) -> &TaskManager {
        &self.tasks
    }

    /// Memory: usage, limit, cleanup.
    pub fn memory(&self) -> &MemoryManager {
        &self.memory
    }

    /// Statistics of monitored operations.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Makes this the process-wide instance ([`global`]), describes every metric to the
    /// installed `metrics` recorder, and starts the background loops on the current tokio
    /// runtime. Call it first thing in `main`, after installing a metrics recorder.
    ///
    /// Errs, changing nothing, when called outside a tokio runtime, when an optimizer is
    /// already installed, or when annotated code already put the default instance to use.
    pub fn install(self) -> Result<&'static PerformanceOptimizer, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(InstallError::NoRuntime.into());
        }
        let mut fresh = false;
        let global = GLOBAL.get_or_init(|| {
            fresh = true;
            Global {
                optimizer: self,
                installed: true,
            }
        });
        if !fresh {
            let error = if global.installed {
                InstallError::AlreadyInstalled
            } else {
                InstallError::DefaultInUse
            };
            return Err(error.into());
        }
        crate::metrics::describe_all();
        if !global.optimizer.config().memory.allocation_tracking_enabled {
            crate::memory::disable_tracking();
        }
        global.optimizer.start_background()?;
        Ok(&global.optimizer)
    }

    /// Starts the background loops on the current tokio runtime, once: the cache sweeper
    /// (every `cache_sweep_interval`), the metrics publisher (every second) and the memory
    /// monitor (every `memory_check_interval`). They hold no strong reference: dropping the
    /// optimizer ends them.
    pub fn start_background(&self) -> Result<(), Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| InstallError::NoRuntime)?;
        if self.background_started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let config = self.config();
        runtime.spawn(sweep_loop(
            self.cache.downgrade(),
            config.cache.sweep_interval,
        ));
        runtime.spawn(publish_loop(self.cache.downgrade()));
        runtime.spawn(MemoryManager::run_monitor(
            self.memory.downgrade(),
            config.memory.check_interval,
        ));
        runtime.spawn(system_loop(Arc::downgrade(&self.system)));
        Ok(())
    }
}

/// The cache's part in a memory cleanup: sweep what expired and, when asked to shed (under
/// pressure, unless cleanups are backed off), drop a share of L1 and L2.
fn cache_cleanup_hook(cache: WeakCache) -> impl Fn(&CleanupRequest) -> String + Send + Sync {
    move |request| {
        let Some(cache) = cache.upgrade() else {
            return "cache gone".into();
        };
        let swept = cache.sweep_expired();
        if !request.shed {
            return if request.under_pressure {
                format!("swept {swept} expired entries; shed nothing (cleanups backed off)")
            } else {
                format!("swept {swept} expired entries")
            };
        }
        let (l1, l2) = cache.shrink(request.shrink_fraction);
        format!(
            "swept {swept} expired entries; dropped {l1} L1 and {l2} L2 entries ({:.0}%)",
            request.shrink_fraction * 100.0
        )
    }
}

/// How often counters are fed to the `metrics` facade: well inside a Prometheus scrape
/// interval, and cheap (a few dozen sums).
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Every `every`: remove expired cache entries.
async fn sweep_loop(cache: WeakCache, every: Duration) {
    let mut ticker = ticker(every);
    loop {
        ticker.tick().await;
        let Some(cache) = cache.upgrade() else { break };
        // A sweep visits every entry: keep it off the async workers.
        let swept = tokio::task::spawn_blocking(move || cache.sweep_expired()).await;
        tracing::trace!(?swept, "cache sweep");
    }
}

/// How often `resource_usage_percent` is sampled.
const SYSTEM_INTERVAL: Duration = Duration::from_secs(15);

/// Every [`SYSTEM_INTERVAL`]: publish the machine's CPU, memory and disk use.
async fn system_loop(system: std::sync::Weak<SystemMonitor>) {
    let mut ticker = ticker(SYSTEM_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(system) = system.upgrade() else {
            break;
        };
        if let Ok(resources) = tokio::task::spawn_blocking(move || system.sample()).await {
            resources.publish_metrics();
        }
    }
}

/// Every second: publish cache metrics.
async fn publish_loop(cache: WeakCache) {
    let mut ticker = ticker(PUBLISH_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(cache) = cache.upgrade() else { break };
        cache.publish_metrics();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CacheConfig, MonitorConfig, TaskConfig};

    /// The default configuration with every hot field changed.
    fn every_hot_field_changed() -> PerformanceConfig {
        PerformanceConfig {
            cache: CacheConfig {
                enabled: false,
                ..CacheConfig::default()
            },
            tasks: TaskConfig {
                max_workers: 3,
                timeout: Duration::from_secs(7),
                ..TaskConfig::default()
            },
            monitor: MonitorConfig {
                profiling_enabled: true,
            },
            ..PerformanceConfig::default()
        }
    }

    /// Each row of the table copies its own field and no other, so that [`HOT_FIELDS`] and
    /// what `update_config` lets through cannot drift apart.
    #[test]
    fn each_hot_field_copies_exactly_the_field_it_names() {
        let default = PerformanceConfig::default();
        let changed = every_hot_field_changed();
        let mut all = default.changed_fields(&changed);
        let mut hot = HOT_FIELDS.to_vec();
        all.sort_unstable();
        hot.sort_unstable();
        assert_eq!(all, hot, "every_hot_field_changed covers the table");
        for row in &HOT {
            let mut copied = default.clone();
            (row.copy)(&mut copied, &changed);
            assert_eq!(default.changed_fields(&copied), [row.field]);
        }
    }

    /// Each row of the table gives its field to its component.
    #[tokio::test]
    async fn every_hot_field_reaches_its_component() {
        let optimizer = PerformanceOptimizer::builder().build().expect("valid");
        optimizer
            .update_config(every_hot_field_changed())
            .expect("only hot fields changed");
        assert!(!optimizer.cache().is_enabled());
        assert_eq!(optimizer.tasks().stats().max_workers, 3);
        assert_eq!(optimizer.tasks().default_timeout(), Duration::from_secs(7));
        assert!(optimizer.monitor().start("op").profiling());
        assert_eq!(*optimizer.config(), every_hot_field_changed());
    }

    #[test]
    fn a_cold_field_is_refused_by_name_and_nothing_changes() {
        let optimizer = PerformanceOptimizer::builder().build().expect("valid");
        let config = PerformanceConfig {
            cache: CacheConfig {
                max_size: 5,
                ..every_hot_field_changed().cache
            },
            ..every_hot_field_changed()
        };
        let Err(ConfigError::Invalid(errors)) = optimizer.update_config(config) else {
            panic!("cache_max_size is cold");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["cache_max_size"]);
        assert!(optimizer.cache().is_enabled(), "nothing changed");
        assert_eq!(*optimizer.config(), PerformanceConfig::default());
    }
}
