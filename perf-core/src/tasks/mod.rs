//! The task manager: a bounded pool of async tasks, a separately bounded pool of blocking
//! ones, timeouts, cancellation and statistics, on tokio.
//!
//! A submitted task first takes one of `max_queued` queue slots (so that `submit` waits and
//! `try_submit` fails when the queue is full), then waits for one of `max_workers` worker
//! permits, then runs under its timeout and its cancellation token. Every task ends in a
//! [`TaskOutcome`]; a panic is caught and reported, never taking the pool down.
//!
//! CPU-bound work goes to [`TaskManager::submit_blocking`]: tokio's blocking threads, at most
//! `max_blocking_workers` at once. The seed used a process pool because Python threads share
//! one interpreter lock; Rust threads run in parallel on every core, share memory without
//! pickling arguments and results, and start in microseconds, so threads do the same job
//! better here. A blocking task cannot be interrupted: when it times out or is cancelled its
//! handle resolves at once, and its thread (and worker slot) is freed when the work returns.

mod handle;
mod stats;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::{
    handle::{TaskHandle, TaskId, TaskOutcome},
    stats::{LatencyStats, TaskStats},
};
use crate::{
    config::PerformanceConfig,
    monitor::{Handles, Monitor, OperationStats, Status, Timing},
};

/// The `operation` label of tasks' metrics.
pub const TASK_OPERATION: &str = "task";

/// Why a task was not accepted, or a setting not changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("the task queue is full ({0} tasks waiting)")]
    QueueFull(u64),
    #[error("the task manager is shut down")]
    ShutDown,
    #[error("max_workers must be at least 1")]
    NoWorkers,
    #[error("changing max_workers needs a tokio runtime")]
    NoRuntime,
}

/// The bounded task pool. Cloning is cheap and shares it.
#[derive(Clone, Debug)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<Semaphore>,
    max_queued: u64,
    workers: Arc<Semaphore>,
    max_workers: Mutex<u64>,
    blocking: Arc<Semaphore>,
    default_timeout: Mutex<Duration>,
    /// Cancelling it cancels every task submitted since it was made ([`TaskManager::cancel_all`]).
    generation: Mutex<CancellationToken>,
    tracker: TaskTracker,
    accepting: AtomicBool,
    next_id: AtomicU64,
    submitted: AtomicU64,
    queued: AtomicU64,
    running: AtomicU64,
    /// Shared with the blocking threads, which hold their count until their work returns.
    running_blocking: Arc<AtomicU64>,
    /// Run time by outcome, and the task metrics.
    run: Arc<Handles>,
    queue_wait: OperationStats,
}

/// What [`TaskManager::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every task finished within the grace period; otherwise the rest were cancelled.
    pub drained: bool,
}

impl TaskManager {
    /// A pool sized by the configuration, recording into `monitor` as operation `task`.
    pub fn new(config: &PerformanceConfig, monitor: &Monitor) -> Self {
        let permits = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                queue: Arc::new(Semaphore::new(permits(config.max_queued))),
                max_queued: config.max_queued,
                workers: Arc::new(Semaphore::new(permits(config.max_workers))),
                max_workers: Mutex::new(config.max_workers),
                blocking: Arc::new(Semaphore::new(permits(config.max_blocking_workers))),
                default_timeout: Mutex::new(config.task_timeout),
                generation: Mutex::new(CancellationToken::new()),
                tracker: TaskTracker::new(),
                accepting: AtomicBool::new(true),
                next_id: AtomicU64::new(1),
                submitted: AtomicU64::new(0),
                queued: AtomicU64::new(0),
                running: AtomicU64::new(0),
                running_blocking: Arc::new(AtomicU64::new(0)),
                run: monitor.handles(TASK_OPERATION),
                queue_wait: OperationStats::default(),
            }),
        }
    }

    /// Submits an async task, waiting for a queue slot when the queue is full. The task runs
    /// under the default timeout (`task_timeout`).
    pub async fn submit<F, T, E>(&self, task: F) -> Result<TaskHandle<T, E>, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit_with_timeout(task, None).await
    }

    /// [`submit`](Self::submit) with its own timeout (`None`: the default).
    pub async fn submit_with_timeout<F, T, E>(
        &self,
        task: F,
        timeout: Option<Duration>,
    ) -> Result<TaskHandle<T, E>, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let slot = self.queue_slot().await?;
        Ok(self.spawn_async(slot, task, timeout))
    }

    /// Submits an async task if a queue slot is free now; [`TaskError::QueueFull`] otherwise.
    pub fn try_submit<F, T, E>(&self, task: F) -> Result<TaskHandle<T, E>, TaskError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let slot = self.try_queue_slot()?;
        Ok(self.spawn_async(slot, task, None))
    }

    /// Submits CPU-bound or blocking work to the blocking pool (see the module documentation),
    /// waiting for a queue slot when the queue is full.
    pub async fn submit_blocking<F, T, E>(&self, work: F) -> Result<TaskHandle<T, E>, TaskError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let slot = self.queue_slot().await?;
        let timeout = *self.inner.default_timeout.lock();
        let (id, cancel) = self.register();
        let inner = Arc::clone(&self.inner);
        let token = cancel.clone();
        let join = self.inner.tracker.spawn(async move {
            inner
                .run_blocking(slot, work, timeout, token, Instant::now())
                .await
        });
        Ok(TaskHandle::new(id, join, cancel))
    }

    /// Submits every task of `tasks` in order (waiting for queue room as needed) and returns
    /// their handles in the same order. After a shutdown, the tasks already submitted are
    /// cancelled and the error returned.
    pub async fn batch_submit<I, F, T, E>(&self, tasks: I) -> Result<Vec<TaskHandle<T, E>>, TaskError>
    where
        I: IntoIterator<Item = F>,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let tasks = tasks.into_iter();
        let mut handles = Vec::with_capacity(tasks.size_hint().0);
        for task in tasks {
            match self.submit(task).await {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    handles.iter().for_each(TaskHandle::cancel);
                    return Err(error);
                }
            }
        }
        Ok(handles)
    }

    /// Waits for every handle, returning one outcome per handle in input order. With a
    /// `timeout`, tasks unfinished at its end are cancelled and reported
    /// [`TaskOutcome::TimedOut`].
    pub async fn wait_for_tasks<T, E>(
        handles: Vec<TaskHandle<T, E>>,
        timeout: Option<Duration>,
    ) -> Vec<TaskOutcome<T, E>> {
        let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
        let mut outcomes = Vec::with_capacity(handles.len());
        for mut handle in handles {
            let outcome = match deadline {
                None => (&mut handle).await,
                Some(deadline) => match tokio::time::timeout_at(deadline, &mut handle).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        handle.cancel();
                        TaskOutcome::TimedOut
                    }
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Cancels every task queued or running now. Tasks submitted later are unaffected.
    pub fn cancel_all(&self) {
        let previous = std::mem::replace(&mut *self.inner.generation.lock(), CancellationToken::new());
        previous.cancel();
    }

    /// Stops accepting tasks, lets those queued and running finish within `grace`, then
    /// cancels the rest and waits for them to end.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &self.inner;
        inner.accepting.store(false, Ordering::SeqCst);
        // Submitters waiting for a slot get ShutDown.
        inner.queue.close();
        inner.tracker.close();
        let drained = tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_ok();
        if !drained {
            inner.generation.lock().cancel();
            inner.tracker.wait().await;
        }
        ShutdownReport { drained }
    }

    /// Changes how many async tasks run at once. Growing takes effect at once; shrinking
    /// takes effect as running tasks finish (none is interrupted).
    pub fn set_max_workers(&self, max_workers: u64) -> Result<(), TaskError> {
        if max_workers == 0 {
            return Err(TaskError::NoWorkers);
        }
        let mut current = self.inner.max_workers.lock();
        if max_workers > *current {
            let more = usize::try_from(max_workers - *current).unwrap_or(usize::MAX);
            self.inner.workers.add_permits(more.min(Semaphore::MAX_PERMITS));
        } else if max_workers < *current {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| TaskError::NoRuntime)?;
            let fewer = u32::try_from(*current - max_workers).unwrap_or(u32::MAX);
            let forgotten = self.inner.workers.forget_permits(fewer as usize) as u32;
            if forgotten < fewer {
                // The rest are held by running tasks: retire them as those tasks finish.
                let workers = Arc::clone(&self.inner.workers);
                runtime.spawn(async move {
                    if let Ok(permits) = workers.acquire_many_owned(fewer - forgotten).await {
                        permits.forget();
                    }
                });
            }
        }
        *current = max_workers;
        Ok(())
    }

    /// Changes the timeout of tasks submitted from now on without one of their own.
    pub fn set_default_timeout(&self, timeout: Duration) {
        *self.inner.default_timeout.lock() = timeout;
    }

    pub fn stats(&self) -> TaskStats {
        let inner = &self.inner;
        TaskStats::new(
            inner.submitted.load(Ordering::Relaxed),
            inner.queued.load(Ordering::Relaxed),
            inner.running.load(Ordering::Relaxed),
            inner.running_blocking.load(Ordering::Relaxed),
            *inner.max_workers.lock(),
            inner.run.stats().snapshot(TASK_OPERATION),
            inner.queue_wait.snapshot("task_queue_wait"),
        )
    }

    async fn queue_slot(&self) -> Result<OwnedSemaphorePermit, TaskError> {
        self.check_accepting()?;
        let slot = Arc::clone(&self.inner.queue)
            .acquire_owned()
            .await
            .map_err(|_| TaskError::ShutDown)?;
        self.check_accepting()?;
        Ok(slot)
    }

    fn try_queue_slot(&self) -> Result<OwnedSemaphorePermit, TaskError> {
        self.check_accepting()?;
        Arc::clone(&self.inner.queue)
            .try_acquire_owned()
            .map_err(|error| match error {
                TryAcquireError::NoPermits => TaskError::QueueFull(self.inner.max_queued),
                TryAcquireError::Closed => TaskError::ShutDown,
            })
    }

    fn check_accepting(&self) -> Result<(), TaskError> {
        if self.inner.accepting.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(TaskError::ShutDown)
        }
    }

    /// A new task's id and cancellation token (a child of the current generation's).
    fn register(&self) -> (TaskId, CancellationToken) {
        let inner = &self.inner;
        inner.submitted.fetch_add(1, Ordering::Relaxed);
        let id = TaskId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        (id, inner.generation.lock().child_token())
    }

    fn spawn_async<F, T, E>(
        &self,
        slot: OwnedSemaphorePermit,
        task: F,
        timeout: Option<Duration>,
    ) -> TaskHandle<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let timeout = timeout.unwrap_or_else(|| *self.inner.default_timeout.lock());
        let (id, cancel) = self.register();
        let inner = Arc::clone(&self.inner);
        let token = cancel.clone();
        let queued_at = Instant::now();
        let join = self.inner.tracker.spawn(async move {
            inner.run_async(slot, task, timeout, token, queued_at).await
        });
        TaskHandle::new(id, join, cancel)
    }
}

impl Inner {
    async fn run_async<F, T, E>(
        &self,
        slot: OwnedSemaphorePermit,
        task: F,
        timeout: Duration,
        cancel: CancellationToken,
        queued_at: Instant,
    ) -> TaskOutcome<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Some(worker) = self.take_worker(&self.workers, slot, &cancel, queued_at).await else {
            return self.finished(TaskOutcome::Cancelled, None);
        };
        let _running = Gauge::up(&self.running);
        let timing = Timing::with(&self.run);
        let run = AssertUnwindSafe(task).catch_unwind();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => TaskOutcome::Cancelled,
            ran = tokio::time::timeout(timeout, run) => match ran {
                Err(_) => TaskOutcome::TimedOut,
                Ok(Err(panic)) => TaskOutcome::Panicked(handle::panic_message(panic.as_ref())),
                Ok(Ok(Ok(value))) => TaskOutcome::Completed(value),
                Ok(Ok(Err(error))) => TaskOutcome::Failed(error),
            },
        };
        drop(worker);
        self.finished(outcome, Some(timing))
    }

    async fn run_blocking<F, T, E>(
        &self,
        slot: OwnedSemaphorePermit,
        work: F,
        timeout: Duration,
        cancel: CancellationToken,
        queued_at: Instant,
    ) -> TaskOutcome<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let Some(worker) = self.take_worker(&self.blocking, slot, &cancel, queued_at).await else {
            return self.finished(TaskOutcome::Cancelled, None);
        };
        let timing = Timing::with(&self.run);
        let running = OwnedGauge::up(&self.running_blocking);
        // The worker slot goes with the thread: it is free only when the work returns.
        let thread = tokio::task::spawn_blocking(move || {
            let _worker = worker;
            let _running = running;
            work()
        });
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => TaskOutcome::Cancelled,
            ran = tokio::time::timeout(timeout, thread) => match ran {
                Err(_) => TaskOutcome::TimedOut,
                Ok(Err(join)) if join.is_panic() => {
                    TaskOutcome::Panicked(handle::panic_message(join.into_panic().as_ref()))
                }
                Ok(Err(_)) => TaskOutcome::Cancelled,
                Ok(Ok(Ok(value))) => TaskOutcome::Completed(value),
                Ok(Ok(Err(error))) => TaskOutcome::Failed(error),
            },
        };
        self.finished(outcome, Some(timing))
    }

    /// Waits for a worker permit from `pool`, giving the queue slot back once it has one;
    /// `None` if cancelled first or the pool closed.
    async fn take_worker(
        &self,
        pool: &Arc<Semaphore>,
        slot: OwnedSemaphorePermit,
        cancel: &CancellationToken,
        queued_at: Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let waiting = Gauge::up(&self.queued);
        let worker = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            permit = Arc::clone(pool).acquire_owned() => permit.ok(),
        };
        drop((waiting, slot));
        let waited = u64::try_from(queued_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.queue_wait.record(Status::Success, waited);
        worker
    }

    /// Records how a task ended (a task cancelled in the queue has no run time to record).
    fn finished<T, E>(&self, outcome: TaskOutcome<T, E>, timing: Option<Timing>) -> TaskOutcome<T, E> {
        let status = outcome.status();
        match timing {
            Some(timing) => timing.finish(status),
            None => Timing::with(&self.run).finish(status),
        }
        outcome
    }
}

/// Counts one in a gauge for as long as it lives.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`Gauge`] for counts that outlive the borrow: a blocking thread's.
struct OwnedGauge(Arc<AtomicU64>);

impl OwnedGauge {
    fn up(gauge: &Arc<AtomicU64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(gauge))
    }
}

impl Drop for OwnedGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
