//! The memory manager: see memory, hold a limit, give memory back.
//!
//! Rust has no garbage collector to run; memory comes back when what holds it is dropped and
//! the allocator returns the freed pages to the system. A cleanup does both: it runs the
//! registered hooks (the cache's sweeps expired entries and, under pressure unless backed
//! off, drops a share of L1 and L2; programs add their own), then asks the allocator to give
//! free pages back.
//!
//! The background monitor (one of the optimizer's background loops, started by `install()`
//! or [`PerformanceOptimizer::start`](crate::PerformanceOptimizer::start)) samples
//! every `memory_check_interval`, publishes `memory_usage_bytes{type}`, and cleans up while
//! usage is at or over `memory_cleanup_threshold` of the limit, at most once every
//! `memory_cleanup_min_interval`. Pressure, once entered, holds until usage falls
//! [`HYSTERESIS`] below the threshold, so that usage hovering at the threshold does not flap.
//!
//! A cleanup not forced that frees little (less than 1% of the limit or than 1 MiB,
//! whichever is more: [`LITTLE_FREED_FRACTION`], [`LITTLE_FREED_MIN_BYTES`]) backs off: the
//! next waits twice as long as the last interval, up to 32 × `memory_cleanup_min_interval`,
//! and while backed off hooks are asked not to shed ([`CleanupRequest::shed`]), so that a
//! limit below what the process needs costs the caches one shed, not one every interval; the
//! memory alert is what speaks then. Back-off ends when a cleanup frees more, or usage leaves
//! pressure. Forced cleanups always run.

mod allocator;
mod backoff;
mod context;
mod machine;
mod tracking;
mod usage;

use std::{
    fmt,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::Serialize;

use self::backoff::{Backoff, Change};
pub use self::{
    allocator::AllocatorStats,
    backoff::{LITTLE_FREED_FRACTION, LITTLE_FREED_MIN_BYTES, MAX_BACKOFF_DOUBLINGS},
    context::{MemoryContext, MemoryReport, TrackMemory, memory_context, track_memory},
    tracking::{
        TrackedStats, TrackingAllocator, disable_tracking, tracked_stats, tracking_is_active,
    },
    usage::{LimitSource, MemoryUsage, SystemUsage, UsageSource},
};
use crate::{
    config::{MemoryConfig, PerformanceConfig},
    metrics,
};

/// How far below the threshold usage must fall to leave pressure.
pub const HYSTERESIS: f64 = 0.05;

/// The settings a running manager can take anew (`memory_cleanup_threshold`,
/// `memory_cleanup_min_interval`, `memory_pressure_shrink_fraction`).
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    threshold: f64,
    min_interval: Duration,
    shrink_fraction: f64,
}

impl Thresholds {
    fn from_config(config: &MemoryConfig) -> Self {
        Self {
            threshold: config.cleanup_threshold,
            min_interval: config.cleanup_min_interval,
            shrink_fraction: config.pressure_shrink_fraction,
        }
    }
}

/// Watches the process's memory and gives memory back. Cloning is cheap and shares it.
#[derive(Clone)]
pub struct MemoryManager {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<dyn UsageSource>,
    /// Replaced whole by [`MemoryManager::set_thresholds`].
    thresholds: Mutex<Thresholds>,
    hooks: Mutex<Vec<Hook>>,
    state: Mutex<State>,
    /// Held for the whole of a cleanup: one at a time.
    cleaning: Mutex<()>,
}

struct Hook {
    name: String,
    run: Box<dyn Fn(&CleanupRequest) -> String + Send + Sync>,
}

#[derive(Default)]
struct State {
    last_sample: Option<MemoryUsage>,
    under_pressure: bool,
    last_cleanup_at: Option<Instant>,
    last_cleanup: Option<CleanupReport>,
    cleanups: u64,
    backoff: Backoff,
}

/// What a cleanup hook is asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanupRequest {
    /// Usage is at or over the threshold (or, having been, has not yet fallen [`HYSTERESIS`]
    /// below it).
    pub under_pressure: bool,
    /// Release what can be rebuilt (a cache's live entries), not only what is stale: under
    /// pressure, unless cleanups are backed off because the last ones freed little, when
    /// shedding would cost hits and give nothing back (a forced cleanup under pressure always
    /// sheds). Hooks should shed on this, not on `under_pressure`.
    pub shed: bool,
    /// The share of its entries a cache should drop: `memory_pressure_shrink_fraction` when
    /// `shed`, else 0.
    pub shrink_fraction: f64,
}

/// Why a cleanup ran; the `reason` label of `memory_cleanups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CleanupReason {
    /// Usage reached the threshold.
    Threshold,
    /// Asked for with `force` (the admin API, a user).
    Forced,
}

impl CleanupReason {
    /// The label value: `threshold` or `forced`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupReason::Threshold => "threshold",
            CleanupReason::Forced => "forced",
        }
    }
}

/// What a cleanup did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Why it ran.
    pub reason: CleanupReason,
    /// The process's RSS in the sample that started the cleanup.
    pub rss_before_bytes: u64,
    /// The process's RSS after the last step.
    pub rss_after_bytes: u64,
    /// `rss_before_bytes - rss_after_bytes`, or 0 if RSS grew meanwhile.
    pub freed_bytes: u64,
    /// Whether hooks were asked to shed ([`CleanupRequest::shed`]).
    pub shed: bool,
    /// Each hook's and the allocator's step, in order, with what it reported and freed.
    pub actions: Vec<CleanupAction>,
    /// How long the steps took; a humantime string (`"1ms 250us"`) when serialized.
    #[serde(serialize_with = "crate::config::duration_serde::serialize")]
    pub duration: Duration,
}

/// One step of a cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CleanupAction {
    /// The hook's name as registered (`cache` for the optimizer's own), or the allocator's
    /// step: `malloc_trim` (glibc) or `jemalloc_purge`.
    pub name: String,
    /// What the step says it released.
    pub detail: String,
    /// The change in RSS across this step: RSS just before it minus RSS just after it, or 0 if
    /// RSS grew. What a hook drops mostly goes back to the allocator, not yet to the system,
    /// so it tends to show at the allocator's step (`malloc_trim`, `jemalloc_purge`) rather
    /// than the hook's; other threads' allocations move the figure too.
    pub freed_bytes: u64,
}

impl CleanupAction {
    /// A step that has not been measured yet (`freed_bytes` 0); the manager measures it.
    pub(crate) fn new(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            detail: detail.into(),
            freed_bytes: 0,
        }
    }
}

/// Why a cleanup did not run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CleanupSkipped {
    /// Not forced, and usage is not under pressure: below `memory_cleanup_threshold` (or,
    /// leaving pressure, more than [`HYSTERESIS`] below it).
    #[error("memory usage {usage:.3} is below the cleanup threshold {threshold:.3}")]
    BelowThreshold {
        /// RSS as a fraction of the limit, in the sample just taken.
        usage: f64,
        /// `memory_cleanup_threshold`.
        threshold: f64,
    },
    /// Not forced, and the last cleanup was too recent.
    #[error("the last cleanup was {since:?} ago; cleanups not forced are {min_interval:?} apart")]
    TooSoon {
        /// Time since the last cleanup started.
        since: Duration,
        /// The spacing in force: `memory_cleanup_min_interval`, doubled for each back-off.
        min_interval: Duration,
    },
    /// Memory could not be sampled, so no cleanup ran, forced or not (also when
    /// [`cleanup_memory_async`](MemoryManager::cleanup_memory_async)'s thread ended without an
    /// answer). Its source is the sampler's error (shared, so that the reason stays `Clone`).
    #[error("memory could not be sampled: {0}")]
    NoSample(#[source] Arc<std::io::Error>),
}

/// The state the monitor keeps, for the admin API and alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MemoryState {
    /// The latest sample, from the monitor or any [`MemoryManager::usage`] call; none before
    /// the first.
    pub last_sample: Option<MemoryUsage>,
    /// Usage is at or over the threshold, or has not yet fallen [`HYSTERESIS`] below it.
    pub under_pressure: bool,
    /// `memory_cleanup_threshold`: the fraction of the limit at which cleanups run.
    pub threshold: f64,
    /// What the latest cleanup did; none before the first.
    pub last_cleanup: Option<CleanupReport>,
    /// Cleanups run since the manager was made, forced ones included.
    pub cleanups: u64,
    /// How many times the spacing of cleanups not forced has doubled because they freed
    /// little; 0 when not backed off. While backed off, cleanups not forced do not shed.
    pub cleanup_backoff: u32,
    /// The spacing of cleanups not forced now: `memory_cleanup_min_interval × 2^cleanup_backoff`.
    #[serde(serialize_with = "crate::config::duration_serde::serialize")]
    pub cleanup_interval: Duration,
    /// How long until a cleanup not forced may run; zero if one may run now.
    #[serde(serialize_with = "crate::config::duration_serde::serialize")]
    pub next_cleanup_in: Duration,
}

impl fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hooks: Vec<String> = self
            .inner
            .hooks
            .lock()
            .iter()
            .map(|h| h.name.clone())
            .collect();
        f.debug_struct("MemoryManager")
            .field("thresholds", &self.thresholds())
            .field("hooks", &hooks)
            .finish_non_exhaustive()
    }
}

impl MemoryManager {
    /// A manager sampling this process, with the configuration's limit and thresholds.
    pub fn new(config: &PerformanceConfig) -> Self {
        Self::with_source(config, SystemUsage::new(config.memory.limit_bytes))
    }

    /// A manager sampling `source` (tests inject their own figures).
    pub fn with_source(config: &PerformanceConfig, source: impl UsageSource) -> Self {
        Self {
            inner: Arc::new(Inner {
                source: Box::new(source),
                thresholds: Mutex::new(Thresholds::from_config(&config.memory)),
                hooks: Mutex::new(Vec::new()),
                state: Mutex::new(State::default()),
                cleaning: Mutex::new(()),
            }),
        }
    }

    /// Takes `memory_cleanup_threshold`, `memory_cleanup_min_interval` and
    /// `memory_pressure_shrink_fraction` from `config`, from the next sample and cleanup on.
    /// The values are not checked here: [`PerformanceConfig::validate`] does.
    pub fn set_thresholds(&self, config: &MemoryConfig) {
        *self.inner.thresholds.lock() = Thresholds::from_config(config);
    }

    fn thresholds(&self) -> Thresholds {
        *self.inner.thresholds.lock()
    }

    /// A fresh sample (tens of microseconds: a couple of small `/proc` reads). Also updates
    /// the pressure state.
    pub fn usage(&self) -> std::io::Result<MemoryUsage> {
        let usage = self.inner.source.sample()?;
        let threshold = self.thresholds().threshold;
        let mut state = self.inner.state.lock();
        state.under_pressure = if state.under_pressure {
            usage.usage_fraction >= threshold - HYSTERESIS
        } else {
            usage.usage_fraction >= threshold
        };
        if !state.under_pressure && state.backoff.end() == Change::Ended {
            tracing::info!("memory usage left pressure: cleanups no longer backed off");
        }
        state.last_sample = Some(usage.clone());
        Ok(usage)
    }

    /// Whether usage is at or over the threshold (or, having been, has not yet fallen
    /// [`HYSTERESIS`] below it). Samples.
    pub fn should_cleanup_memory(&self) -> bool {
        self.usage().is_ok() && self.inner.state.lock().under_pressure
    }

    /// Adds a step to every cleanup, run in registration order before the allocator is asked
    /// to return memory. The hook returns a line saying what it released.
    pub fn register_cleanup_hook(
        &self,
        name: impl Into<String>,
        hook: impl Fn(&CleanupRequest) -> String + Send + Sync + 'static,
    ) {
        self.inner.hooks.lock().push(Hook {
            name: name.into(),
            run: Box::new(hook),
        });
    }

    /// Runs the hooks, then returns free memory to the system. Without `force`, does nothing
    /// below the threshold, nor within `memory_cleanup_min_interval` of the last cleanup (a
    /// multiple of it while backed off, see [`MemoryState::cleanup_backoff`]).
    ///
    /// Blocking (hooks walk caches, the allocator walks its arenas): from async code, call it
    /// through `spawn_blocking`, or use [`cleanup_memory_async`](Self::cleanup_memory_async).
    pub fn cleanup_memory(&self, force: bool) -> Result<CleanupReport, CleanupSkipped> {
        let before = self
            .usage()
            .map_err(|error| CleanupSkipped::NoSample(Arc::new(error)))?;
        self.cleanup_at(&before, force, Instant::now())
    }

    /// [`cleanup_memory`](Self::cleanup_memory) given the sample just taken, at `now` (the
    /// monitor's clock; tests pass their own instants).
    fn cleanup_at(
        &self,
        before: &MemoryUsage,
        force: bool,
        now: Instant,
    ) -> Result<CleanupReport, CleanupSkipped> {
        let _one_at_a_time = self.inner.cleaning.lock();
        let thresholds = self.thresholds();
        let (under_pressure, backoff, last_cleanup_at) = {
            let state = self.inner.state.lock();
            (state.under_pressure, state.backoff, state.last_cleanup_at)
        };
        if !force {
            if !under_pressure {
                return Err(CleanupSkipped::BelowThreshold {
                    usage: before.usage_fraction,
                    threshold: thresholds.threshold,
                });
            }
            if let Some(at) = last_cleanup_at {
                let since = now.saturating_duration_since(at);
                let interval = backoff.interval(thresholds.min_interval);
                if since < interval {
                    return Err(CleanupSkipped::TooSoon {
                        since,
                        min_interval: interval,
                    });
                }
            }
        }
        let reason = if force {
            CleanupReason::Forced
        } else {
            CleanupReason::Threshold
        };
        let shed = under_pressure && (force || !backoff.is_backed_off());
        let report = self.clean(reason, before, under_pressure, shed);
        ::metrics::counter!(metrics::name(metrics::MEMORY_CLEANUPS_TOTAL), metrics::labels::REASON => reason.as_str())
            .increment(1);
        tracing::info!(
            reason = reason.as_str(),
            freed_bytes = report.freed_bytes,
            shed,
            duration_ms = report.duration.as_secs_f64() * 1e3,
            "memory cleanup"
        );
        let (change, interval) = {
            let mut state = self.inner.state.lock();
            state.last_cleanup_at = Some(now);
            state.last_cleanup = Some(report.clone());
            state.cleanups += 1;
            let change = state
                .backoff
                .after_cleanup(report.freed_bytes, before.limit_bytes, force);
            (change, state.backoff.interval(thresholds.min_interval))
        };
        match change {
            Change::Started => tracing::warn!(
                freed_bytes = report.freed_bytes,
                rss_bytes = report.rss_after_bytes,
                limit_bytes = before.limit_bytes,
                next_cleanup_in = ?interval,
                "memory cleanup freed little: backing off (cleanups further apart, caches no \
                 longer shed) until usage leaves pressure or a cleanup frees more; look at the \
                 memory alert: the limit may be below what the process needs"
            ),
            Change::Ended => tracing::info!(
                freed_bytes = report.freed_bytes,
                "memory cleanup freed more than little: no longer backed off"
            ),
            Change::Doubled | Change::Unchanged => {}
        }
        Ok(report)
    }

    /// [`cleanup_memory`](Self::cleanup_memory) on tokio's blocking threads.
    pub async fn cleanup_memory_async(&self, force: bool) -> Result<CleanupReport, CleanupSkipped> {
        let manager = self.clone();
        tokio::task::spawn_blocking(move || manager.cleanup_memory(force))
            .await
            .unwrap_or_else(|error| {
                // The cleanup's thread ended without an answer (it panicked, or the runtime
                // shut down): report it as the sample it could not give.
                Err(CleanupSkipped::NoSample(Arc::new(std::io::Error::other(
                    error,
                ))))
            })
    }

    /// What the monitor last saw and did.
    pub fn state(&self) -> MemoryState {
        let thresholds = self.thresholds();
        let state = self.inner.state.lock();
        let cleanup_interval = state.backoff.interval(thresholds.min_interval);
        let next_cleanup_in = state.last_cleanup_at.map_or(Duration::ZERO, |at| {
            at.checked_add(cleanup_interval)
                .map_or(Duration::MAX, |next| {
                    next.saturating_duration_since(Instant::now())
                })
        });
        MemoryState {
            last_sample: state.last_sample.clone(),
            under_pressure: state.under_pressure,
            threshold: thresholds.threshold,
            last_cleanup: state.last_cleanup.clone(),
            cleanups: state.cleanups,
            cleanup_backoff: state.backoff.doublings(),
            cleanup_interval,
            next_cleanup_in,
        }
    }

    /// When the next cleanup not forced may run: the last cleanup's start plus the spacing in
    /// force; none before the first cleanup.
    #[cfg(test)]
    fn next_cleanup_at(&self) -> Option<Instant> {
        let min_interval = self.thresholds().min_interval;
        let state = self.inner.state.lock();
        let interval = state.backoff.interval(min_interval);
        state.last_cleanup_at.map(|at| at + interval)
    }

    /// Sets `memory_usage_bytes{type}` from a sample.
    pub(crate) fn publish_metrics(usage: &MemoryUsage) {
        let gauge = |kind: &'static str, bytes: u64| {
            ::metrics::gauge!(metrics::name(metrics::MEMORY_USAGE_BYTES), metrics::labels::TYPE => kind)
                .set(bytes as f64);
        };
        gauge("rss", usage.rss_bytes);
        gauge("virtual", usage.virtual_bytes);
        gauge("limit", usage.limit_bytes);
        gauge("system_total", usage.system_total_bytes);
        gauge("system_available", usage.system_available_bytes);
        if let Some(allocator) = &usage.allocator {
            gauge("allocator_allocated", allocator.allocated_bytes);
            gauge("allocator_held_free", allocator.held_free_bytes);
        }
        if let Some(tracked) = &usage.tracked {
            gauge("tracked_live", tracked.live_bytes);
            gauge("tracked_peak", tracked.peak_live_bytes);
        }
        // Cleanups are rare: their counts start at 0 so that a dashboard shows "none yet"
        // rather than no data.
        for reason in [CleanupReason::Threshold, CleanupReason::Forced] {
            ::metrics::counter!(metrics::name(metrics::MEMORY_CLEANUPS_TOTAL), metrics::labels::REASON => reason.as_str())
                .increment(0);
        }
    }

    /// Every `every`: sample, publish, and clean up over the threshold. Sampling and cleanup
    /// run on tokio's blocking threads. Ends when the manager is dropped.
    pub(crate) async fn run_monitor(manager: WeakMemoryManager, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(manager) = manager.upgrade() else {
                break;
            };
            let checked = tokio::task::spawn_blocking(move || manager.check()).await;
            if let Err(error) = checked {
                tracing::warn!(%error, "memory check failed");
            }
        }
    }

    /// One monitor step.
    fn check(&self) {
        // Whatever happened is logged.
        let _ = self.check_at(Instant::now());
    }

    /// One monitor step at `now`: sample, publish, clean up if due.
    fn check_at(&self, now: Instant) -> Result<CleanupReport, CleanupSkipped> {
        let usage = self.usage().map_err(|error| {
            tracing::warn!(%error, "memory not sampled");
            CleanupSkipped::NoSample(Arc::new(error))
        })?;
        Self::publish_metrics(&usage);
        let cleaned = self.cleanup_at(&usage, false, now);
        match &cleaned {
            Ok(_) | Err(CleanupSkipped::BelowThreshold { .. }) => {}
            Err(skipped) => tracing::debug!(%skipped, "memory cleanup skipped"),
        }
        cleaned
    }

    pub(crate) fn downgrade(&self) -> WeakMemoryManager {
        WeakMemoryManager(Arc::downgrade(&self.inner))
    }

    /// Runs each hook, then each allocator's release, reading RSS after every step to say what
    /// it freed.
    fn clean(
        &self,
        reason: CleanupReason,
        before: &MemoryUsage,
        under_pressure: bool,
        shed: bool,
    ) -> CleanupReport {
        let started = Instant::now();
        let request = CleanupRequest {
            under_pressure,
            shed,
            shrink_fraction: if shed {
                self.thresholds().shrink_fraction
            } else {
                0.0
            },
        };
        let mut rss = before.rss_bytes;
        let mut actions = Vec::new();
        let mut measured = |step: &dyn Fn() -> CleanupAction| {
            let mut action = step();
            // Unreadable: the step freed nothing that can be told.
            let after = self.inner.source.rss_bytes().unwrap_or(rss);
            action.freed_bytes = rss.saturating_sub(after);
            rss = after;
            actions.push(action);
        };
        for hook in self.inner.hooks.lock().iter() {
            measured(&|| CleanupAction::new(hook.name.clone(), (hook.run)(&request)));
        }
        for release in allocator::releases() {
            measured(&release);
        }
        CleanupReport {
            reason,
            rss_before_bytes: before.rss_bytes,
            rss_after_bytes: rss,
            freed_bytes: before.rss_bytes.saturating_sub(rss),
            shed,
            actions,
            duration: started.elapsed(),
        }
    }
}

/// A [`MemoryManager`] handle that does not keep it alive (for the monitor).
#[derive(Debug, Clone)]
pub(crate) struct WeakMemoryManager(Weak<Inner>);

impl WeakMemoryManager {
    pub(crate) fn upgrade(&self) -> Option<MemoryManager> {
        self.0.upgrade().map(|inner| MemoryManager { inner })
    }
}

#[cfg(test)]
mod tests;
