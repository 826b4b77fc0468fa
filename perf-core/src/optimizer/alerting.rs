//! [`Alerting`]: what the alert evaluation reads (every component's figures, the
//! configuration in force) and keeps (the counters' window, which alerts fire), shared by
//! the optimizer and, weakly, its background loop.

use std::{sync::Arc, time::SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

#[cfg(feature = "system")]
use crate::system::SystemMonitor;
use crate::{
    alerts::{self, AlertBook, AlertState, Snapshot, Transition, WebhookStats, Window},
    cache::MultiLevelCache,
    config::PerformanceConfig,
    memory::MemoryManager,
    query::QueryOptimizer,
    tasks::TaskManager,
};

/// The configuration in force, shared with the background evaluation, which reads it afresh
/// each time.
pub(super) type SharedConfig = Arc<RwLock<Arc<PerformanceConfig>>>;

#[derive(Debug)]
pub(super) struct Alerting {
    pub(super) config: SharedConfig,
    pub(super) cache: MultiLevelCache,
    pub(super) memory: MemoryManager,
    pub(super) tasks: TaskManager,
    pub(super) query: QueryOptimizer,
    #[cfg(feature = "system")]
    pub(super) system: Arc<SystemMonitor>,
    /// One lock for both, so that two evaluations (the loop's, an on-demand one) each see
    /// and leave a consistent state.
    state: Mutex<(Window, AlertBook)>,
    #[cfg(feature = "webhook")]
    outbox: alerts::Outbox,
}

impl Alerting {
    pub(super) fn new(
        config: SharedConfig,
        cache: MultiLevelCache,
        memory: MemoryManager,
        tasks: TaskManager,
        query: QueryOptimizer,
        #[cfg(feature = "system")] system: Arc<SystemMonitor>,
    ) -> Self {
        Self {
            config,
            cache,
            memory,
            tasks,
            query,
            #[cfg(feature = "system")]
            system,
            state: Mutex::new((Window::new(Instant::now()), AlertBook::default())),
            #[cfg(feature = "webhook")]
            outbox: alerts::Outbox::default(),
        }
    }

    pub(super) fn config(&self) -> Arc<PerformanceConfig> {
        Arc::clone(&self.config.read())
    }

    /// Every component's statistics now, counters since start. Samples memory and the
    /// machine: blocking, about a millisecond.
    pub(super) fn snapshot(&self) -> Snapshot {
        let window = self.config().alerts.window;
        let since = SystemTime::now()
            .checked_sub(window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
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
            #[cfg(feature = "system")]
            system: Some(self.system.sample()),
            #[cfg(not(feature = "system"))]
            system: None,
        }
    }

    /// Judges the rules over the window ending `now`: logs each transition, sets its gauge,
    /// queues it for the webhook. Publishes the machine's resources it sampled. Blocking.
    pub(super) fn evaluate(&self, now: Instant) -> Vec<Transition> {
        let config = self.config();
        let mut snapshot = self.snapshot();
        #[cfg(feature = "system")]
        if let Some(system) = &snapshot.system {
            system.publish_metrics();
        }
        let mut state = self.state.lock();
        let (window, book) = &mut *state;
        window.narrow(&mut snapshot, now, config.alerts.window);
        let transitions = book.update(alerts::readings(&snapshot, &config), SystemTime::now());
        // Under the lock: two evaluations' transitions are announced and queued in their
        // order.
        transitions.iter().for_each(alerts::announce);
        #[cfg(feature = "webhook")]
        if let Some(url) = &config.alerts.webhook_url {
            self.outbox.send(url, transitions.clone());
        }
        transitions
    }

    /// The state the last evaluation left.
    pub(super) fn state(&self) -> AlertState {
        let state = self.state.lock();
        let book = &state.1;
        AlertState {
            firing: book.firing(),
            evaluated_at: book.evaluated_at(),
            window: self.config().alerts.window,
            webhook: self.webhook_stats(),
        }
    }

    fn webhook_stats(&self) -> WebhookStats {
        #[cfg(feature = "webhook")]
        return self.outbox.stats();
        #[cfg(not(feature = "webhook"))]
        WebhookStats::default()
    }

    /// A new queue for the webhook and the loop that sends what it receives (see
    /// [`alerts::Outbox::open`]).
    #[cfg(feature = "webhook")]
    pub(super) fn open_webhook(&self) -> impl Future<Output = ()> + Send + use<> {
        self.outbox.open(alerts::WebhookPolicy::default())
    }
}
