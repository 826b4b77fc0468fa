//! [`TaskConfig`]: the task manager's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, duration_serde, require};

/// The task manager's settings; each field's key in brackets where it differs.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_workers` | 10 | async tasks the task manager runs at once (changeable at run time) |
/// | `max_queued` | 10 000 | tasks waiting for a worker before `submit` waits and `try_submit` fails |
/// | `max_blocking_workers` | 4 | blocking (CPU-bound) tasks the task manager runs at once |
/// | `timeout` (`task_timeout`) | 30s | default timeout of a managed task (changeable at run time) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskConfig {
    pub max_workers: u64,
    pub max_queued: u64,
    pub max_blocking_workers: u64,
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
