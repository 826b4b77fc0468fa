//! The task manager: a bounded pool of async tasks, a separately bounded pool of blocking
//! ones, timeouts, cancellation and statistics, on tokio.
//!
//! A submitted task first takes one of `max_queued` queue slots (so that `submit` waits and
//! `try_submit` fails when the queue is full), then waits for one of `max_workers` worker
//! permits, then runs under its timeout until it ends or is cancelled. Every task ends in a
//! [`TaskOutcome`]; a panic is caught and reported, never taking the pool down.
//!
//! CPU-bound work goes to [`TaskManager::submit_blocking`]: tokio's blocking threads, at most
//! `max_blocking_workers` at once. The seed used a process pool because Python threads share
//! one interpreter lock; Rust threads run in parallel on every core, share memory without
//! pickling arguments and results, and start in microseconds, so threads do the same job
//! better here. A blocking task cannot be interrupted: when it times out or is cancelled its
//! handle resolves at once, and its thread (and worker slot) is freed when the work returns.

mod gauges;
mod handle;
mod stats;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
    time::Duration,
};

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use self::{
    handle::{TaskHandle, TaskId, TaskOutcome},
    stats::{LatencyStats, TaskStats},
};
use crate::{
    config::PerformanceConfig,
    monitor::{Monitor, Operation, OperationStats, Status, Timing},
};

/// The `operation` label of tasks' metrics.
pub const TASK_OPERATION: &str = "task";

/// One task in this many has its queue wait timed.
const QUEUE_WAIT_SAMPLE: u64 = 8;

/// Why a task was not accepted, or a setting not changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// [`try_submit`](TaskManager::try_submit) found every queue slot taken; the number is
    /// `max_queued`. [`submit`](TaskManager::submit) waits for room instead.
    #[error("the task queue is full ({0} tasks waiting)")]
    QueueFull(u64),
    /// The manager was [`shutdown`](TaskManager::shutdown): it accepts no more tasks, and
    /// callers waiting for a queue slot get this too.
    #[error("the task manager is shut down")]
    ShutDown,
    /// [`set_max_workers`](TaskManager::set_max_workers) was given 0.
    #[error("max_workers must be at least 1")]
    NoWorkers,
    /// No longer returned: [`set_max_workers`](TaskManager::set_max_workers) shrinks the pool
    /// without a runtime.
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
    /// Worker permits held by running tasks that the pool no longer has room for since it
    /// shrank: each is forgotten when its task ends, however it ends.
    retiring: AtomicU64,
    blocking: Arc<Semaphore>,
    default_timeout_nanos: AtomicU64,
    /// Bumped by [`TaskManager::cancel_all`]: a task of an older generation is cancelled.
    /// A number, not a token per task: tasks that finish at once never touch anything shared
    /// for it. A task's own cancellation aborts its tokio task instead.
    generation: AtomicU64,
    /// Wakes running tasks when the generation changes.
    generation_changed: Notify,
    tracker: TaskTracker,
    next_id: AtomicU64,
    max_blocking: u64,
    submitted: AtomicU64,
    /// Run time by outcome, and the task metrics.
    run: Arc<Operation>,
    queue_wait: OperationStats,
}

impl Inner {
    /// `(queued, running, running_blocking)` now, off the pools' free permits.
    fn in_use(&self, max_workers: u64) -> (u64, u64, u64) {
        let in_use =
            |pool: &Semaphore, size: u64| size.saturating_sub(pool.available_permits() as u64);
        // Tasks whose workers retire when they end still run.
        let workers = max_workers.saturating_add(self.retiring.load(Ordering::Acquire));
        (
            in_use(&self.queue, self.max_queued),
            in_use(&self.workers, workers),
            in_use(&self.blocking, self.max_blocking),
        )
    }
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
        let permits = |n: u64| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS)
        };
        let manager = Self {
            inner: Arc::new(Inner {
                queue: Arc::new(Semaphore::new(permits(config.tasks.max_queued))),
                max_queued: config.tasks.max_queued,
                workers: Arc::new(Semaphore::new(permits(config.tasks.max_workers))),
                max_workers: Mutex::new(config.tasks.max_workers),
                retiring: AtomicU64::new(0),
                blocking: Arc::new(Semaphore::new(permits(config.tasks.max_blocking_workers))),
                default_timeout_nanos: AtomicU64::new(nanos(config.tasks.timeout)),
                generation: AtomicU64::new(0),
                generation_changed: Notify::new(),
                tracker: TaskTracker::new(),
                next_id: AtomicU64::new(1),
                max_blocking: config.tasks.max_blocking_workers,
                submitted: AtomicU64::new(0),
                run: monitor.operation(TASK_OPERATION),
                queue_wait: OperationStats::default(),
            }),
        };
        gauges::register(&manager.inner);
        manager
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
        let timeout = self.inner.default_timeout();
        Ok(self.spawn(move |inner, ids, timing| async move {
            inner.run_blocking(slot, work, timeout, ids, timing).await
        }))
    }

    /// Submits every task of `tasks` in order (waiting for queue room as needed) and returns
    /// their handles in the same order. After a shutdown, the tasks already submitted are
    /// cancelled and the error returned.
    pub async fn batch_submit<I, F, T, E>(
        &self,
        tasks: I,
    ) -> Result<Vec<TaskHandle<T, E>>, TaskError>
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
        &self,
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
        self.inner.new_generation();
    }

    /// Stops accepting tasks, lets those queued and running finish within `grace`, then
    /// cancels the rest and waits for them to end.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &self.inner;
        // A closed queue refuses new tasks; submitters waiting for a slot get ShutDown.
        inner.queue.close();
        inner.tracker.close();
        let drained = tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_ok();
        if !drained {
            inner.new_generation();
            inner.tracker.wait().await;
        }
        ShutdownReport { drained }
    }

    /// Changes how many async tasks run at once. Growing takes effect at once; shrinking
    /// takes effect as running tasks finish (none is interrupted), each retiring its worker.
    /// Needs no runtime.
    pub fn set_max_workers(&self, max_workers: u64) -> Result<(), TaskError> {
        if max_workers == 0 {
            return Err(TaskError::NoWorkers);
        }
        let inner = &self.inner;
        let mut current = inner.max_workers.lock();
        if max_workers > *current {
            // Workers still to retire stay instead; the rest are new.
            let more = max_workers - *current;
            let kept = take_up_to(&inner.retiring, more);
            let added = usize::try_from(more - kept).unwrap_or(usize::MAX);
            inner.workers.add_permits(added.min(Semaphore::MAX_PERMITS));
        } else if max_workers < *current {
            let fewer = *current - max_workers;
            let idle = inner
                .workers
                .forget_permits(usize::try_from(fewer).unwrap_or(usize::MAX));
            // The rest are held by running tasks: retired as those tasks end.
            (inner.retiring).fetch_add(fewer - idle as u64, Ordering::AcqRel);
        }
        *current = max_workers;
        Ok(())
    }

    /// Changes the timeout of tasks submitted from now on without one of their own.
    pub fn set_default_timeout(&self, timeout: Duration) {
        self.inner
            .default_timeout_nanos
            .store(nanos(timeout), Ordering::Relaxed);
    }

    /// The timeout of tasks submitted without one of their own.
    #[cfg(test)]
    pub(crate) fn default_timeout(&self) -> Duration {
        Duration::from_nanos(self.inner.default_timeout_nanos.load(Ordering::Relaxed))
    }

    /// Counts, and what is queued and running now (read off the pools' free permits, so
    /// that tasks count nothing shared on their way; while a shrink of `max_workers` waits for
    /// tasks to finish, `running` may exceed `max_workers`).
    pub fn stats(&self) -> TaskStats {
        let inner = &self.inner;
        let max_workers = *inner.max_workers.lock();
        let (queued, running, running_blocking) = inner.in_use(max_workers);
        TaskStats::new(
            inner.submitted.load(Ordering::Relaxed),
            queued,
            running,
            running_blocking,
            max_workers,
            inner.run.stats().snapshot(TASK_OPERATION),
            inner.queue_wait.snapshot("task_queue_wait"),
        )
    }

    async fn queue_slot(&self) -> Result<OwnedSemaphorePermit, TaskError> {
        Arc::clone(&self.inner.queue)
            .acquire_owned()
            .await
            .map_err(|_| TaskError::ShutDown)
    }

    fn try_queue_slot(&self) -> Result<OwnedSemaphorePermit, TaskError> {
        Arc::clone(&self.inner.queue)
            .try_acquire_owned()
            .map_err(|error| match error {
                TryAcquireError::NoPermits => TaskError::QueueFull(self.inner.max_queued),
                TryAcquireError::Closed => TaskError::ShutDown,
            })
    }

    /// Spawns a task with its id, its generation and its timing, made before the task is:
    /// a task aborted before it first ran still records its cancellation.
    fn spawn<T, E, Fut>(
        &self,
        run: impl FnOnce(Arc<Inner>, (TaskId, u64), Timing) -> Fut,
    ) -> TaskHandle<T, E>
    where
        Fut: Future<Output = TaskOutcome<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let inner = &self.inner;
        inner.submitted.fetch_add(1, Ordering::Relaxed);
        let id = TaskId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let generation = inner.generation.load(Ordering::Acquire);
        let timing = Timing::with(&inner.run);
        let task = run(Arc::clone(inner), (id, generation), timing);
        // With profiling on, the task runs in a span from submission to its end; off, the
        // future is spawned as it is.
        let join = if inner.run.profiling().is_on() {
            let span = tracing::info_span!("perf.task", id = id.0);
            inner.tracker.spawn(task.instrument(span))
        } else {
            inner.tracker.spawn(task)
        };
        TaskHandle::new(id, join)
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
        let timeout = timeout.unwrap_or_else(|| self.inner.default_timeout());
        self.spawn(move |inner, ids, timing| async move {
            inner.run_async(slot, task, timeout, ids, timing).await
        })
    }
}

impl Inner {
    fn default_timeout(&self) -> Duration {
        Duration::from_nanos(self.default_timeout_nanos.load(Ordering::Relaxed))
    }

    async fn run_async<F, T, E>(
        &self,
        slot: OwnedSemaphorePermit,
        task: F,
        timeout: Duration,
        (id, generation): (TaskId, u64),
        mut timing: Timing,
    ) -> TaskOutcome<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        // `timing`, dropped unfinished (the handle aborted the task), records a cancellation.
        let Some(permit) = self.take_worker(&self.workers, slot, id, generation).await else {
            return finished(TaskOutcome::Cancelled, timing);
        };
        // Given back, or retired, when the task ends or its future is dropped (aborted).
        let worker = Worker {
            permit: Some(permit),
            retiring: &self.retiring,
        };
        timing.restart();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut run = std::pin::pin!(AssertUnwindSafe(task).catch_unwind());
        // A first poll in place: a task that finishes in it needs no timer and no cancellation
        // listener, whose state, kept in every task, would double a small task's size.
        let first = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
        let outcome = match first {
            Poll::Ready(ran) => outcome_of(ran),
            Poll::Pending => Box::pin(self.finish_pending(run, deadline, generation)).await,
        };
        drop(worker);
        finished(outcome, timing)
    }

    /// The rest of a task that did not finish in its first poll: until it ends, times out, or
    /// its generation is cancelled.
    async fn finish_pending<T, E>(
        &self,
        run: Pin<&mut impl Future<Output = std::thread::Result<Result<T, E>>>>,
        deadline: tokio::time::Instant,
        generation: u64,
    ) -> TaskOutcome<T, E> {
        tokio::select! {
            biased;
            ran = tokio::time::timeout_at(deadline, run) => match ran {
                Ok(ran) => outcome_of(ran),
                Err(_) => TaskOutcome::TimedOut,
            },
            () = self.cancelled(generation) => TaskOutcome::Cancelled,
        }
    }

    async fn run_blocking<F, T, E>(
        &self,
        slot: OwnedSemaphorePermit,
        work: F,
        timeout: Duration,
        (id, generation): (TaskId, u64),
        mut timing: Timing,
    ) -> TaskOutcome<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let Some(worker) = self.take_worker(&self.blocking, slot, id, generation).await else {
            return finished(TaskOutcome::Cancelled, timing);
        };
        timing.restart();
        // The worker slot goes with the thread: it is free only when the work returns.
        let thread = tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work()
        });
        let outcome = tokio::select! {
            biased;
            ran = tokio::time::timeout(timeout, thread) => match ran {
                Err(_) => TaskOutcome::TimedOut,
                Ok(Err(join)) if join.is_panic() => outcome_of(Err(join.into_panic())),
                Ok(Err(_)) => TaskOutcome::Cancelled,
                Ok(Ok(result)) => outcome_of(Ok(result)),
            },
            () = self.cancelled(generation) => TaskOutcome::Cancelled,
        };
        finished(outcome, timing)
    }

    /// Waits for a worker permit from `pool`, giving the queue slot back once it has one;
    /// `None` if the pool closed or the task's generation was cancelled meanwhile. A queued
    /// task does not listen for cancellation (that would cost every queued task a registration
    /// with one shared waiter list); `cancel_all` frees the workers, and the queue then
    /// empties at once.
    ///
    /// The wait is timed on one task in [`QUEUE_WAIT_SAMPLE`]: recording every one updates a
    /// histogram that all workers share, measured here at a sixth of a small task's cost.
    async fn take_worker(
        &self,
        pool: &Arc<Semaphore>,
        slot: OwnedSemaphorePermit,
        id: TaskId,
        generation: u64,
    ) -> Option<OwnedSemaphorePermit> {
        let queued_at =
            id.0.is_multiple_of(QUEUE_WAIT_SAMPLE)
                .then(quanta::Instant::now);
        let worker = Arc::clone(pool).acquire_owned().await.ok();
        drop(slot);
        if let Some(queued_at) = queued_at {
            self.queue_wait
                .record(Status::Success, nanos(queued_at.elapsed()));
        }
        worker.filter(|_| !self.is_cancelled(generation))
    }

    fn is_cancelled(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) != generation
    }

    /// Completes once `generation` is cancelled.
    async fn cancelled(&self, generation: u64) {
        loop {
            let changed = self.generation_changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a change after it wakes this waiter.
            changed.as_mut().enable();
            if self.is_cancelled(generation) {
                return;
            }
            changed.await;
        }
    }

    fn new_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.generation_changed.notify_waiters();
    }
}

/// An async task's worker permit. Dropped, it goes back to the pool, unless the pool has shrunk
/// since and still has workers to retire: then it is one of them.
struct Worker<'a> {
    permit: Option<OwnedSemaphorePermit>,
    retiring: &'a AtomicU64,
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        // One load in the common case, nothing to retire.
        if self.retiring.load(Ordering::Acquire) > 0
            && take_up_to(self.retiring, 1) == 1
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
        }
    }
}

/// Takes up to `n` from `count`, never below zero; returns how much it took.
fn take_up_to(count: &AtomicU64, n: u64) -> u64 {
    let mut taken = 0;
    let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
        taken = now.min(n);
        Some(now - taken)
    });
    taken
}

/// A run's outcome: its value, its error, or its panic.
fn outcome_of<T, E>(ran: std::thread::Result<Result<T, E>>) -> TaskOutcome<T, E> {
    match ran {
        Ok(Ok(value)) => TaskOutcome::Completed(value),
        Ok(Err(error)) => TaskOutcome::Failed(error),
        Err(panic) => TaskOutcome::Panicked(handle::panic_message(panic.as_ref())),
    }
}

/// Records how a task ended.
fn finished<T, E>(outcome: TaskOutcome<T, E>, timing: Timing) -> TaskOutcome<T, E> {
    timing.finish(outcome.status());
    outcome
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
