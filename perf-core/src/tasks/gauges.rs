//! `tasks_running` and `tasks_queued`: read off the pools when metrics are flushed
//! ([`crate::metrics::flush`]: every second by the background loops, and before a scrape of
//! perf-http's `/metrics`), so that tasks never touch a metric on their way.

use std::sync::{Arc, Weak};

use super::Inner;
use crate::metrics::{self, Batched, TASKS_QUEUED, TASKS_RUNNING, labels};

/// Has the manager's gauges set at every flush, for as long as it lives.
pub(super) fn register(inner: &Arc<Inner>) {
    let weak: Weak<dyn Batched> = Arc::downgrade(inner) as Weak<Inner>;
    metrics::register_batched(weak);
}

impl Batched for Inner {
    fn flush(&self) {
        let max_workers = *self.max_workers.lock();
        let (queued, running, running_blocking) = self.in_use(max_workers);
        for (pool, running) in [("async", running), ("blocking", running_blocking)] {
            ::metrics::gauge!(metrics::name(TASKS_RUNNING), labels::POOL => pool)
                .set(running as f64);
        }
        ::metrics::gauge!(metrics::name(TASKS_QUEUED)).set(queued as f64);
    }
}
