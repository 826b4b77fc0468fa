//! A submitted task's handle and how a task ends.

use std::{
    any::Any,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::task::JoinHandle;

use crate::monitor::Status;

/// A task's number, unique within its manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TaskId(pub(super) u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome<T, E> {
    /// The task returned `Ok`; its value.
    Completed(T),
    /// The task returned an `Err`; its error.
    Failed(E),
    /// The task panicked; the panic's message.
    Panicked(String),
    /// The task ran longer than its timeout, or was still unfinished when a wait gave up.
    TimedOut,
    /// Cancelled while queued or running.
    Cancelled,
}

impl<T, E> TaskOutcome<T, E> {
    /// Whether the task returned `Ok`.
    pub fn is_completed(&self) -> bool {
        matches!(self, TaskOutcome::Completed(_))
    }

    /// The value of a completed task.
    pub fn completed(self) -> Option<T> {
        match self {
            TaskOutcome::Completed(value) => Some(value),
            _ => None,
        }
    }

    /// The `status` label this outcome is counted under.
    pub fn status(&self) -> Status {
        match self {
            TaskOutcome::Completed(_) => Status::Success,
            TaskOutcome::Failed(_) => Status::Error,
            TaskOutcome::Panicked(_) => Status::Panic,
            TaskOutcome::TimedOut => Status::Timeout,
            TaskOutcome::Cancelled => Status::Cancelled,
        }
    }
}

/// A submitted task: await it for its [`TaskOutcome`], or [`cancel`](Self::cancel) it.
/// Dropping the handle does not stop the task.
#[must_use = "a task's outcome is only seen through its handle"]
pub struct TaskHandle<T, E> {
    id: TaskId,
    join: JoinHandle<TaskOutcome<T, E>>,
}

impl<T, E> fmt::Debug for TaskHandle<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("finished", &self.join.is_finished())
            .finish()
    }
}

impl<T, E> TaskHandle<T, E> {
    pub(super) fn new(id: TaskId, join: JoinHandle<TaskOutcome<T, E>>) -> Self {
        Self { id, join }
    }

    /// The task's number, unique within its manager (shown as `task-<n>`).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Cancels the task, queued or running (at its next `.await`); its outcome becomes
    /// [`TaskOutcome::Cancelled`] unless it already finished. Blocking work cannot be
    /// interrupted: its thread runs on, and its handle resolves at once.
    pub fn cancel(&self) {
        self.join.abort();
    }

    /// Whether the task has ended, so that awaiting the handle returns at once. A cancelled
    /// blocking task counts as ended although its thread may still run.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = TaskOutcome<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.join)
            .poll(cx)
            .map(|joined| match joined {
                Ok(outcome) => outcome,
                // Panics are caught inside the task: this one is the pool's own.
                Err(error) if error.is_panic() => {
                    TaskOutcome::Panicked(panic_message(error.into_panic().as_ref()))
                }
                // Aborted by `cancel`, or the runtime shut down.
                Err(_) => TaskOutcome::Cancelled,
            })
    }
}

/// The message a panic was raised with.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
