//! [`PerformanceOptimizer`]: one of each component, the process-wide instance, background loops.
//!
//! # Background work
//!
//! An optimizer's background loops sweep expired cache entries (every
//! `cache_sweep_interval`), publish cache metrics and hand batched monitor metrics to the
//! recorder (every second), run the memory monitor
//! (every `memory_check_interval`), and evaluate the alerts over `alert_window` (every 15 s,
//! or a tenth of the window when shorter, at least every second), sampling the machine then
//! (with the `system` feature); with `alert_webhook_url` set, a loop of their own sends the
//! alerts' transitions. They run only when
//! started, on one tokio runtime:
//!
//! - [`PerformanceOptimizer::install`] starts them on the current runtime, for as long as it
//!   runs: for a program, its life.
//! - [`PerformanceOptimizer::start`] (the current runtime) and
//!   [`start_on`](PerformanceOptimizer::start_on) (a given one) start them and return a
//!   [`BackgroundTasks`]; dropping it, or [`BackgroundTasks::stop`], stops them. Tests and
//!   programs that do not install use these.
//! - [`global`] starts nothing. The default instance it builds when nothing is installed runs
//!   no loops unless started (`perf::global().start()`): its expired entries are still never
//!   served, only left for eviction rather than swept.
//!
//! The loops hold their optimizer weakly and end when it is dropped. They also end when their
//! runtime shuts down (each `#[tokio::test]` has its own); the optimizer can then be started
//! again on the next, by `start` or `start_on`. While they run, another start is refused
//! ([`StartError::AlreadyRunning`]). A runtime without timers (built without `enable_time`)
//! cannot run them: the start fails with [`StartError::TimersDisabled`], and `install()` is
//! refused with it. (tokio cannot be asked whether a runtime has timers, only made to panic
//! when it has none: the start catches that panic, whose message the panic hook still prints.)

mod alerting;
mod background;
mod hot;

use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;

pub use self::background::BackgroundTasks;
pub use self::hot::HOT_FIELDS;
use self::{
    alerting::{Alerting, SharedConfig},
    background::{Runs, Targets},
    hot::HOT,
};
#[cfg(feature = "system")]
use crate::system::SystemMonitor;
use crate::{
    Error, InstallError, StartError,
    alerts::{self, Alert, AlertState, Recommendation, Snapshot, Transition},
    cache::{CacheBuilder, MultiLevelCache, RemoteTier, WeakCache},
    config::{ConfigError, FieldError, PerformanceConfig},
    memory::{CleanupRequest, MemoryManager, UsageSource},
    monitor::{Monitor, PerformanceContext, performance_context_on},
    profiling::Profiling,
    query::QueryOptimizer,
    tasks::TaskManager,
};

/// One of each component over one configuration: the cache, the memory manager, the task
/// pool, the query optimizer, the operation monitor and the machine's sampler.
///
/// Build it with [`builder`](Self::builder). A service then [`install`](Self::install)s it,
/// first thing in `main`: it becomes the instance that `#[performance_monitor]`,
/// `#[cache_result]` and [`performance_context`] use ([`global`]), and its background loops
/// start. Tests and tools keep it to themselves, and [`start`](Self::start) its loops if they
/// want them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use perf_core::{PerformanceConfig, PerformanceOptimizer, Tier};
///
/// let config = PerformanceConfig::from_toml_str(
///     r#"
///     cache_max_size = 50000
///     cache_ttl = "10m"
///     "#,
/// )?;
/// let optimizer = PerformanceOptimizer::builder().config(config).build()?;
/// // A service would go on with `.install()?` here.
///
/// async fn fetch_ad(id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("ad {id}"))
/// }
/// let cache = optimizer.cache();
/// for _ in 0..2 {
///     // One loader run per key, however many requests miss at once.
///     let ad = cache.get_or_load("ad:42", Tier::L2, None, || fetch_ad(42)).await?;
///     assert_eq!(*ad, "ad 42");
/// }
/// let stats = cache.stats();
/// assert_eq!(stats.loads.loader_runs, 1);
/// assert_eq!(stats.hit_rate, 0.5);
/// assert_eq!(optimizer.config().cache.max_size, 50000);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PerformanceOptimizer {
    config: SharedConfig,
    cache: MultiLevelCache,
    memory: MemoryManager,
    tasks: TaskManager,
    query: QueryOptimizer,
    monitor: Monitor,
    #[cfg(feature = "system")]
    system: Arc<SystemMonitor>,
    alerting: Arc<Alerting>,
    background: Runs,
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
        let profiling = Profiling::new(config.monitor.profiling_enabled);
        let mut cache: CacheBuilder =
            MultiLevelCache::builder(&config).profiling(profiling.clone());
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
        let monitor = Monitor::new(profiling);
        let tasks = TaskManager::new(&config, &monitor);
        let query = QueryOptimizer::new(&config, cache.clone());
        #[cfg(feature = "system")]
        let system = Arc::new(SystemMonitor::default());
        let config: SharedConfig = Arc::new(RwLock::new(Arc::new(config)));
        let alerting = Arc::new(Alerting::new(
            Arc::clone(&config),
            cache.clone(),
            memory.clone(),
            tasks.clone(),
            query.clone(),
            #[cfg(feature = "system")]
            Arc::clone(&system),
        ));
        Ok(PerformanceOptimizer {
            cache,
            memory,
            tasks,
            query,
            monitor,
            #[cfg(feature = "system")]
            system,
            config,
            alerting,
            background: Runs::default(),
        })
    }
}

struct Global {
    optimizer: PerformanceOptimizer,
    installed: bool,
    /// The loops `install()` started, kept for as long as their runtime runs.
    background: Mutex<Option<BackgroundTasks>>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// The process-wide optimizer: the installed one, or else a default one built on first use.
///
/// Starts nothing: see [Background work](self#background-work).
pub fn global() -> &'static PerformanceOptimizer {
    let global = GLOBAL.get_or_init(|| Global {
        optimizer: PerformanceOptimizer::builder()
            .build()
            .expect("the default configuration is valid"),
        installed: false,
        background: Mutex::new(None),
    });
    &global.optimizer
}

impl PerformanceOptimizer {
    /// A builder with the default configuration, no remote tier, the real clock and this
    /// process's memory figures; [`OptimizerBuilder::build`] validates and builds.
    pub fn builder() -> OptimizerBuilder {
        OptimizerBuilder::default()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<PerformanceConfig> {
        Arc::clone(&self.config.read())
    }

    /// Applies a new configuration to the running components. Only [`HOT_FIELDS`] can change
    /// at run time; a configuration that is invalid, or that changes any other field, is
    /// refused with every offending field named, and nothing changes. Giving a field its
    /// current value is no change: a configuration read with [`config`](Self::config) is
    /// always accepted.
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
        let changed = current.changed_fields(&config);
        for hot in HOT.iter().filter(|hot| changed.contains(&hot.field)) {
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

    /// The multi-level cache. The query optimizer's result cache keeps its entries here, and
    /// so does `#[cache_result]` when this is the global instance or is named with
    /// `optimizer = ..`.
    pub fn cache(&self) -> &MultiLevelCache {
        &self.cache
    }

    /// Query timing, per-shape statistics, the slow-query log and the query result cache.
    pub fn query(&self) -> &QueryOptimizer {
        &self.query
    }

    /// The machine's CPU, memory, disks and network.
    #[cfg(feature = "system")]
    #[cfg_attr(docsrs, doc(cfg(feature = "system")))]
    pub fn system(&self) -> &SystemMonitor {
        &self.system
    }

    /// Every component's statistics now, counters since start, for recommendations and the
    /// admin API. Samples memory and the machine (the machine with the `system` feature):
    /// blocking, about a millisecond.
    pub fn snapshot(&self) -> Snapshot {
        self.alerting.snapshot()
    }

    /// The alerts firing now, most severe first: from the background evaluation while the
    /// loops run (see [`alert_state`](Self::alert_state)), else evaluated now.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alert_state()
            .firing
            .into_iter()
            .map(|active| active.alert)
            .collect()
    }

    /// Which alerts fire and since when, the window they were judged over, and what the
    /// webhook did: from the background evaluation while the loops run; without them,
    /// [evaluated](Self::evaluate_alerts) now. Blocking then, about a millisecond.
    pub fn alert_state(&self) -> AlertState {
        if !self.background.is_running() {
            self.alerting.evaluate(tokio::time::Instant::now());
        }
        self.alerting.state()
    }

    /// Evaluates the alert rules now, as the background loops do on their own schedule:
    /// counters over `alert_window`, memory and the machine sampled now. Each alert that
    /// starts or stops firing is returned, logged, set in `performance_alerts_active` and
    /// queued for the webhook (sent only while the loops run). Blocking: about a millisecond.
    pub fn evaluate_alerts(&self) -> Vec<Transition> {
        self.alerting.evaluate(tokio::time::Instant::now())
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
    /// runtime for as long as it runs. Call it first thing in `main`, after installing a
    /// metrics recorder.
    ///
    /// Errs, changing nothing, when called outside a tokio runtime, on a runtime without
    /// timers ([`StartError::TimersDisabled`]), when an optimizer is already installed, or
    /// when annotated code already put the default instance to use.
    pub fn install(self) -> Result<&'static PerformanceOptimizer, Error> {
        let runtime = Handle::try_current().map_err(|_| InstallError::NoRuntime)?;
        if !background::has_timers(&runtime) {
            return Err(StartError::TimersDisabled.into());
        }
        if GLOBAL.get().is_none() {
            // Before anything of the installed optimizer emits a metric.
            crate::metrics::set_prefix(&self.config().monitor.metrics_prefix)
                .map_err(InstallError::MetricsPrefix)?;
        }
        let mut fresh = false;
        let global = GLOBAL.get_or_init(|| {
            fresh = true;
            Global {
                optimizer: self,
                installed: true,
                background: Mutex::new(None),
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
        match global.optimizer.start_on(&runtime) {
            Ok(tasks) => *global.background.lock() = Some(tasks),
            // Started before install() by its owner, whose handle keeps them.
            Err(StartError::AlreadyRunning) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(&global.optimizer)
    }

    /// Starts the background loops on the current tokio runtime: the cache sweeper, the
    /// metrics publisher, the memory monitor and the machine's sampler (see
    /// [Background work](self#background-work)). They run until the returned handle is
    /// dropped or stopped, the optimizer is dropped, or the runtime shuts down.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let optimizer = perf_core::PerformanceOptimizer::builder().build()?;
    /// let background = optimizer.start()?;
    /// assert!(background.is_running());
    /// background.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// Errs outside a runtime, on a runtime without timers, and while the loops run already.
    pub fn start(&self) -> Result<BackgroundTasks, StartError> {
        let runtime = Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        self.start_on(&runtime)
    }

    /// [`start`](Self::start) on the runtime of `runtime`, from anywhere.
    pub fn start_on(&self, runtime: &Handle) -> Result<BackgroundTasks, StartError> {
        let config = self.config();
        let targets = Targets {
            cache: self.cache.downgrade(),
            memory: self.memory.downgrade(),
            sweep_every: config.cache.sweep_interval,
            memory_every: config.memory.check_interval,
            alerting: Arc::downgrade(&self.alerting),
            alert_every: background::alert_interval(config.alerts.window),
        };
        self.background.start(runtime, targets)
    }

    /// Feeds every component's figures to the `metrics` recorder now: the cache's counters
    /// and sizes, the monitored calls held back in batches ([`crate::metrics::flush`]), a
    /// fresh memory sample and (with the `system` feature) the machine's resources, as the
    /// background loops do on their own schedule. For programs that run no loops, or a scrape
    /// that must see the latest. Blocking: samples memory and the machine, about a
    /// millisecond; [`crate::metrics::flush`] alone takes microseconds.
    pub fn publish_metrics(&self) {
        self.cache.publish_metrics();
        crate::metrics::flush();
        match self.memory.usage() {
            Ok(usage) => MemoryManager::publish_metrics(&usage),
            Err(error) => tracing::debug!(%error, "memory not sampled"),
        }
        #[cfg(feature = "system")]
        self.system.sample().publish_metrics();
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

/// Times the scope it is held in as operation `name`, on the global optimizer's monitor.
pub fn performance_context(name: &str) -> PerformanceContext {
    performance_context_on(global().monitor(), name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Tier,
        config::{AlertConfig, CacheConfig, MemoryConfig, MonitorConfig, QueryConfig, TaskConfig},
    };

    /// The default configuration with every hot field changed.
    fn every_hot_field_changed() -> PerformanceConfig {
        PerformanceConfig {
            cache: CacheConfig {
                enabled: false,
                ttl: Duration::from_secs(7200),
                fail_safe_max: Duration::from_secs(600),
                fail_safe_throttle: Duration::from_secs(5),
                soft_timeout: Duration::from_millis(100),
                hard_timeout: Duration::from_secs(2),
                eager_refresh: 0.5,
                ttl_jitter: 0.1,
                failure_ttl: Duration::from_secs(1),
                ..CacheConfig::default()
            },
            tasks: TaskConfig {
                max_workers: 3,
                timeout: Duration::from_secs(7),
                ..TaskConfig::default()
            },
            memory: MemoryConfig {
                cleanup_threshold: 0.6,
                cleanup_min_interval: Duration::from_secs(5),
                pressure_shrink_fraction: 0.5,
                ..MemoryConfig::default()
            },
            query: QueryConfig {
                slow_threshold: Duration::from_millis(250),
                ..QueryConfig::default()
            },
            alerts: AlertConfig {
                memory_usage: 0.5,
                cache_hit_rate: 0.5,
                cache_min_lookups: 10,
                slow_queries: 1,
                window: Duration::from_secs(60),
                task_failure_rate: 0.5,
                resource_usage: 0.5,
                ..AlertConfig::default()
            },
            monitor: MonitorConfig {
                profiling_enabled: true,
                ..MonitorConfig::default()
            },
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
        assert_eq!(optimizer.cache().default_ttl(), Duration::from_secs(7200));
        assert_eq!(optimizer.tasks().stats().max_workers, 3);
        assert_eq!(optimizer.tasks().default_timeout(), Duration::from_secs(7));
        assert!(optimizer.monitor().start("op").profiling());
        assert_eq!(optimizer.memory().state().threshold, 0.6);
        assert_eq!(
            optimizer.memory().state().cleanup_interval,
            Duration::from_secs(5)
        );
        assert_eq!(
            optimizer.query().slow_threshold(),
            Duration::from_millis(250)
        );
        assert_eq!(*optimizer.config(), every_hot_field_changed());
    }

    /// A query timed by name alone (the seed's usage) raises the slow-query alert.
    #[tokio::test(start_paused = true)]
    async fn a_slow_query_timed_by_name_raises_the_alert() {
        let optimizer = PerformanceOptimizer::builder().build().expect("valid");
        let mut config = PerformanceConfig::clone(&optimizer.config());
        config.alerts.slow_queries = 0;
        config.query.slow_threshold = Duration::from_millis(100);
        optimizer.update_config(config).expect("both hot");
        {
            let _timer = optimizer.query().query_timer("ads_analytics");
            tokio::time::advance(Duration::from_millis(150)).await;
        }
        let alert = optimizer
            .alerts()
            .into_iter()
            .find(|alert| alert.kind == alerts::AlertKind::SlowQueries)
            .expect("the slow-query alert");
        assert_eq!((alert.observed, alert.threshold), (1.0, 0.0));
    }

    /// The configuration in force, given back, changes nothing and is accepted.
    #[test]
    fn the_configuration_in_force_is_accepted_as_it_is() {
        let optimizer = PerformanceOptimizer::builder().build().expect("valid");
        let current = PerformanceConfig::clone(&optimizer.config());
        optimizer.update_config(current).expect("no change");
        assert_eq!(*optimizer.config(), PerformanceConfig::default());
    }

    /// The seed's update: entries written afterwards get the new TTL, those before keep theirs.
    #[tokio::test]
    async fn a_new_cache_ttl_applies_to_entries_written_afterwards() {
        let (clock, mock) = crate::cache::Clock::mock();
        let optimizer = PerformanceOptimizer::builder()
            .clock(clock)
            .build()
            .expect("valid");
        let cache = optimizer.cache();
        cache
            .set("before", 1u32, Tier::L1, None)
            .await
            .expect("set");
        let mut config = PerformanceConfig::clone(&optimizer.config());
        config.cache.ttl = Duration::from_secs(7200);
        config.tasks.max_workers = 15;
        optimizer.update_config(config).expect("both hot");
        cache.set("after", 2u32, Tier::L1, None).await.expect("set");
        mock.increment(Duration::from_secs(3601));
        assert_eq!(
            cache.get::<u32>("before", Tier::L1).await.expect("read"),
            None
        );
        assert_eq!(
            cache
                .get::<u32>("after", Tier::L1)
                .await
                .expect("read")
                .as_deref(),
            Some(&2)
        );
        mock.increment(Duration::from_secs(3600));
        assert_eq!(
            cache.get::<u32>("after", Tier::L1).await.expect("read"),
            None
        );
        assert_eq!(optimizer.tasks().stats().max_workers, 15);
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
        assert_eq!(optimizer.cache().default_ttl(), Duration::from_secs(3600));
        assert_eq!(optimizer.tasks().stats().max_workers, 10);
        assert_eq!(*optimizer.config(), PerformanceConfig::default());
    }
}
