//! The optimizer's background loops, and [`BackgroundTasks`], the handle that keeps them
//! running. See the [module docs](super) for when they run.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{runtime::Handle, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::alerting::Alerting;
use crate::{
    StartError,
    cache::WeakCache,
    memory::{MemoryManager, WeakMemoryManager},
};

/// How often counters are fed to the `metrics` facade: well inside a Prometheus scrape
/// interval, and cheap (a few dozen sums).
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the alerts are evaluated (and `resource_usage_percent` sampled), at most: a
/// tenth of `alert_window` when that is shorter, so that the window's figures stay fresh,
/// but not more often than every [`MIN_ALERT_INTERVAL`].
const ALERT_INTERVAL: Duration = Duration::from_secs(15);
const MIN_ALERT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the alerts over `window` are evaluated.
pub(super) fn alert_interval(window: Duration) -> Duration {
    (window / 10).clamp(MIN_ALERT_INTERVAL, ALERT_INTERVAL)
}

/// The running background loops of one [`PerformanceOptimizer`](super::PerformanceOptimizer),
/// from [`start`](super::PerformanceOptimizer::start).
///
/// Dropping it stops them, as does [`stop`](Self::stop); so do dropping the optimizer and
/// shutting down the runtime they run on. Once they have stopped, the optimizer can be
/// started again, on that runtime or another.
#[must_use = "dropping BackgroundTasks stops the loops it holds"]
#[derive(Debug)]
pub struct BackgroundTasks {
    run: Arc<Run>,
    task: Option<JoinHandle<()>>,
}

impl BackgroundTasks {
    /// Whether the loops run: false once stopped, and once their runtime has shut down or
    /// their optimizer been dropped.
    pub fn is_running(&self) -> bool {
        self.run.is_running()
    }

    /// Stops the loops and waits until they have ended. A sweep or a memory check already
    /// under way on tokio's blocking threads finishes on its own.
    pub async fn stop(mut self) {
        self.run.cancel.cancel();
        if let Some(task) = self.task.take() {
            // Its only failure is having been cancelled, by a runtime shutdown: ended too.
            let _ = task.await;
        }
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        self.run.cancel.cancel();
    }
}

/// One start's loops: stopped through `cancel`, `ended` once their task's future is gone.
#[derive(Debug)]
struct Run {
    cancel: CancellationToken,
    ended: AtomicBool,
}

impl Run {
    fn is_running(&self) -> bool {
        !self.ended.load(Ordering::Acquire) && !self.cancel.is_cancelled()
    }
}

/// Marks its run ended when dropped with the task's future: when the loops return or are
/// stopped, and when the runtime shuts down with the task in it, polled or not.
struct EndsRun(Arc<Run>);

impl Drop for EndsRun {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
    }
}

/// What the loops work on, held weakly so that dropping the optimizer ends them.
#[derive(Debug)]
pub(super) struct Targets {
    pub(super) cache: WeakCache,
    pub(super) memory: WeakMemoryManager,
    pub(super) sweep_every: Duration,
    pub(super) memory_every: Duration,
    pub(super) alerting: Weak<Alerting>,
    pub(super) alert_every: Duration,
}

/// An optimizer's latest run, so that a second start while it runs is refused.
#[derive(Debug, Default)]
pub(super) struct Runs {
    latest: Mutex<Option<Arc<Run>>>,
}

impl Runs {
    /// Starts the loops on `runtime`, unless they run already or it has no timers.
    pub(super) fn start(
        &self,
        runtime: &Handle,
        targets: Targets,
    ) -> Result<BackgroundTasks, StartError> {
        let mut latest = self.latest.lock();
        if latest.as_ref().is_some_and(|run| run.is_running()) {
            return Err(StartError::AlreadyRunning);
        }
        if !has_timers(runtime) {
            return Err(StartError::TimersDisabled);
        }
        let run = Arc::new(Run {
            cancel: CancellationToken::new(),
            ended: AtomicBool::new(false),
        });
        // Made here, not in the task, so that a runtime already shut down (which drops the
        // task unpolled) still marks the run ended.
        let ends = EndsRun(Arc::clone(&run));
        let task = runtime.spawn(run_loops(ends, targets));
        *latest = Some(Arc::clone(&run));
        Ok(BackgroundTasks {
            run,
            task: Some(task),
        })
    }
}

impl Runs {
    /// Whether the latest start's loops still run.
    pub(super) fn is_running(&self) -> bool {
        self.latest
            .lock()
            .as_ref()
            .is_some_and(|run| run.is_running())
    }
}

/// Whether `runtime` has a time driver, which every loop needs. tokio offers no way to ask
/// but making a timer, which panics without one: the panic is caught here (it still reaches
/// the panic hook, which prints it) so that the start fails instead of the loops.
pub(super) fn has_timers(runtime: &Handle) -> bool {
    let _inside = runtime.enter();
    std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
}

/// The loops, until every one has ended (their targets dropped) or the run is stopped.
async fn run_loops(ends: EndsRun, targets: Targets) {
    let cancel = ends.0.cancel.clone();
    let Targets {
        cache,
        memory,
        sweep_every,
        memory_every,
        alerting,
        alert_every,
    } = targets;
    // Opened here, once the start is accepted: a refused start leaves the running queue.
    #[cfg(feature = "webhook")]
    let webhook = alerting.upgrade().map(|alerting| alerting.open_webhook());
    let webhook = async move {
        #[cfg(feature = "webhook")]
        if let Some(webhook) = webhook {
            webhook.await;
        }
    };
    let loops = async {
        tokio::join!(
            sweep_loop(cache.clone(), sweep_every),
            publish_loop(cache),
            MemoryManager::run_monitor(memory, memory_every),
            alert_loop(alerting, alert_every),
            webhook,
        )
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = loops => {}
    }
    drop(ends);
}

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

/// Every `every`: evaluate the alerts, and publish the machine's CPU, memory and disk use
/// sampled for them.
async fn alert_loop(alerting: Weak<Alerting>, every: Duration) {
    let mut ticker = ticker(every);
    loop {
        ticker.tick().await;
        let Some(alerting) = alerting.upgrade() else {
            break;
        };
        let now = tokio::time::Instant::now();
        // Samples memory and the machine: off the async workers.
        let evaluated = tokio::task::spawn_blocking(move || alerting.evaluate(now)).await;
        tracing::trace!(
            transitions = evaluated.map_or(0, |t| t.len()),
            "alerts evaluated"
        );
    }
}

/// Every [`PUBLISH_INTERVAL`]: publish cache metrics, and hand monitored calls to the
/// recorder ([`crate::metrics::flush`]), so that a scrape that does not flush is at most about
/// a second behind.
async fn publish_loop(cache: WeakCache) {
    let mut ticker = ticker(PUBLISH_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(cache) = cache.upgrade() else { break };
        cache.publish_metrics();
        crate::metrics::flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::runtime::{Builder, Runtime};

    use super::*;
    use crate::{
        Error, PerformanceConfig, PerformanceOptimizer, Tier,
        cache::{Clock, Mock},
        config::CacheConfig,
    };

    /// A runtime with timers, its clock paused: sleeps return as soon as it is idle.
    fn runtime() -> Runtime {
        Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    }

    fn optimizer() -> (PerformanceOptimizer, Arc<Mock>) {
        let (clock, mock) = Clock::mock();
        let config = PerformanceConfig {
            cache: CacheConfig {
                sweep_interval: Duration::from_secs(30),
                ..CacheConfig::default()
            },
            ..PerformanceConfig::default()
        };
        let optimizer = PerformanceOptimizer::builder()
            .config(config)
            .clock(clock)
            .build()
            .expect("valid");
        (optimizer, mock)
    }

    /// Whether the sweeper removes an entry that expired, within 100 (paused) seconds.
    async fn sweeps(optimizer: &PerformanceOptimizer, mock: &Mock) -> bool {
        let cache = optimizer.cache();
        cache
            .set_local("short", 1u8, Tier::L2, Some(Duration::from_secs(10)))
            .expect("stored");
        mock.increment(Duration::from_secs(11));
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stats = cache.stats();
            if (stats.l1.entries, stats.l2.entries) == (Some(0), Some(0)) {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_runtime_without_timers_is_refused_at_start_never_in_a_loop() {
        let (optimizer, _) = optimizer();
        let no_timers = Builder::new_current_thread().build().expect("runtime");
        assert_eq!(
            optimizer.start_on(no_timers.handle()).err(),
            Some(StartError::TimersDisabled)
        );
        no_timers.block_on(async {
            assert_eq!(optimizer.start().err(), Some(StartError::TimersDisabled));
            let refused = PerformanceOptimizer::builder()
                .build()
                .expect("valid")
                .install()
                .expect_err("no timers");
            assert!(
                matches!(refused, Error::Start(StartError::TimersDisabled)),
                "{refused}"
            );
            assert!(refused.to_string().contains("enable_time"), "{refused}");
        });
        assert_eq!(optimizer.start().err(), Some(StartError::NoRuntime));

        // The refusals left nothing running: a runtime with timers starts the loops.
        let with_timers = runtime();
        let background = optimizer
            .start_on(with_timers.handle())
            .expect("timers enabled");
        assert!(background.is_running());
    }

    #[test]
    fn the_loops_end_with_their_runtime_and_start_again_on_the_next() {
        let (optimizer, mock) = optimizer();
        let first = runtime();
        let background = first
            .block_on(async { optimizer.start() })
            .expect("started");
        assert!(background.is_running());
        assert_eq!(
            first.block_on(async { optimizer.start() }).err(),
            Some(StartError::AlreadyRunning)
        );
        drop(first);
        assert!(
            !background.is_running(),
            "the runtime's shutdown ended them"
        );

        let second = runtime();
        second.block_on(async {
            let again = optimizer.start().expect("started on the next runtime");
            assert!(sweeps(&optimizer, &mock).await, "they run there");
            assert!(again.is_running());
        });
        drop(second);

        // A multi-threaded runtime's drop waits for its workers, which drop their tasks.
        let third = Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime");
        let background = optimizer.start_on(third.handle()).expect("started");
        assert!(background.is_running());
        drop(third);
        assert!(!background.is_running());
        let fourth = runtime();
        assert!(optimizer.start_on(fourth.handle()).is_ok());
    }

    #[test]
    fn a_stopped_or_dropped_handle_lets_the_optimizer_start_again() {
        let (optimizer, mock) = optimizer();
        runtime().block_on(async {
            let background = optimizer.start().expect("started");
            background.stop().await;
            let background = optimizer.start().expect("started after stop()");
            drop(background);
            let background = optimizer.start().expect("started after drop");
            assert!(sweeps(&optimizer, &mock).await);
            assert!(background.is_running());
        });
    }

    #[test]
    fn the_loops_end_with_their_optimizer() {
        let (optimizer, _) = optimizer();
        runtime().block_on(async {
            let background = optimizer.start().expect("started");
            drop(optimizer);
            // Each loop sees the optimizer gone at its next tick; the slowest ticks every 30 s.
            for _ in 0..120 {
                if !background.is_running() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            panic!("the loops outlived their optimizer");
        });
    }
}
