//! [`TaskConfig`]: the task manager's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The task manager's settings ([`TaskManager`](crate::tasks::TaskManager)). Each field's
/// documentation starts with its key (in TOML, and upper-cased after `PERF_` in the
/// environment) and its default. Counts are between 1 and 2^32.
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TaskConfig {
    /// `max_workers`, default 10. How many async tasks run at once; the rest wait in the
    /// queue. Changeable at run time ([`HOT_FIELDS`](crate::HOT_FIELDS)).
    pub max_workers: u64,
    /// `max_queued`, default 10 000. How many submitted tasks may wait for a worker; when
    /// that many wait, `submit` waits for room and `try_submit` fails with
    /// [`TaskError::QueueFull`](crate::TaskError::QueueFull).
    pub max_queued: u64,
    /// `max_blocking_workers`, default 4. How many blocking (CPU-bound) tasks run at once on
    /// tokio's blocking threads.
    pub max_blocking_workers: u64,
    /// `task_timeout`, default 30 s. The timeout of a task submitted without one of its own;
    /// a task still running then ends [`TimedOut`](crate::tasks::TaskOutcome::TimedOut).
    /// Changeable at run time, for tasks submitted afterwards
    /// ([`HOT_FIELDS`](crate::HOT_FIELDS)). Must be above zero.
    #[serde(rename = "task_timeout", with = "duration_serde")]
    pub timeout: Duration,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            max_workers: 10,
            max_queued: 10_000,
            max_blocking_workers: 4,
            timeout: Duration::from_secs(30),
        }
    }
}

impl ConfigSection for TaskConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        let counts = [
            ("max_workers", self.max_workers),
            ("max_queued", self.max_queued),
            ("max_blocking_workers", self.max_blocking_workers),
        ];
        for (field, value) in counts {
            require(bad, value > 0, field, "must be at least 1");
        }
        // tokio's semaphores hold at most usize::MAX >> 3 permits.
        for (field, value) in counts {
            require(bad, value <= 1 << 32, field, "must be at most 4294967296");
        }
        require(
            bad,
            !self.timeout.is_zero(),
            "task_timeout",
            "must be greater than zero",
        );
    }
}
