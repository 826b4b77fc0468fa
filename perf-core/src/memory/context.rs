//! [`memory_context`]: what a scope did to memory, the seed's tracemalloc snapshot diff.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{tracking, usage::process_memory};

/// What a scope did to memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryReport {
    /// The name the scope was given.
    pub name: &'static str,
    /// The process's RSS at the end minus at the start: every thread's doing, not only this
    /// scope's.
    pub rss_delta_bytes: i64,
    /// With [`TrackingAllocator`](super::TrackingAllocator) installed and counting: bytes
    /// this scope allocated (a reallocation counts its new size). None otherwise.
    pub allocated_bytes: Option<u64>,
    /// With [`TrackingAllocator`](super::TrackingAllocator) installed and counting: bytes the
    /// scope allocated minus bytes it freed, negative when it freed more than it allocated
    /// (memory allocated before it began). None otherwise.
    pub live_bytes: Option<i64>,
    /// How long the scope lasted.
    pub duration: Duration,
}

/// Starts measuring what the code until the guard's end does to memory. The report comes from
/// [`MemoryContext::finish`], or is logged (`tracing`, debug level) when the guard drops.
///
/// Allocation counts are this thread's: for async code, measure the future with
/// [`track_memory`], which follows it across worker threads.
///
/// ```
/// let scope = perf_core::memory::memory_context("build index");
/// let index: Vec<u64> = (0..10_000).collect();
/// let report = scope.finish();
/// assert_eq!(report.name, "build index");
/// # drop(index);
/// ```
pub fn memory_context(name: &'static str) -> MemoryContext {
    MemoryContext {
        name,
        start: Start::now(),
        finished: false,
        this_thread: PhantomData,
    }
}

/// The guard of [`memory_context`]. It stays on the thread it was made on:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(perf_core::memory::memory_context("moved"));
/// ```
#[derive(Debug)]
#[must_use = "the scope ends when the guard drops"]
pub struct MemoryContext {
    name: &'static str,
    start: Start,
    finished: bool,
    /// Not `Send`: the counts are this thread's, so the scope must end where it began (a
    /// guard held across `.await` in a spawned future does not compile; use [`track_memory`]).
    this_thread: PhantomData<*const ()>,
}

impl MemoryContext {
    /// Ends the scope and returns its report.
    pub fn finish(mut self) -> MemoryReport {
        self.finished = true;
        self.report()
    }

    fn report(&self) -> MemoryReport {
        let (allocated, freed) = tracking::thread_totals();
        self.start.report(
            self.name,
            allocated - self.start.allocated,
            freed - self.start.freed,
        )
    }
}

impl Drop for MemoryContext {
    fn drop(&mut self) {
        if !self.finished {
            self.report().log();
        }
    }
}

/// Measures `future` as [`memory_context`] measures a scope: allocations are counted on
/// whichever thread each poll runs.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (sum, report) = perf_core::memory::track_memory("sum", async {
///     (0..1000u64).collect::<Vec<_>>().iter().sum::<u64>()
/// })
/// .await;
/// assert_eq!(sum, 499_500);
/// assert_eq!(report.name, "sum");
/// # });
/// ```
pub fn track_memory<F: Future>(name: &'static str, future: F) -> TrackMemory<F> {
    TrackMemory {
        future,
        name,
        start: None,
        allocated: 0,
        freed: 0,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`track_memory`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct TrackMemory<F> {
        #[pin]
        future: F,
        name: &'static str,
        start: Option<Start>,
        allocated: u64,
        freed: u64,
    }
}

impl<F: Future> Future for TrackMemory<F> {
    type Output = (F::Output, MemoryReport);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let start = this.start.get_or_insert_with(Start::now);
        let (allocated_before, freed_before) = tracking::thread_totals();
        let polled = this.future.poll(cx);
        let (allocated_after, freed_after) = tracking::thread_totals();
        *this.allocated += allocated_after - allocated_before;
        *this.freed += freed_after - freed_before;
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(output) => {
                let report = start.report(this.name, *this.allocated, *this.freed);
                Poll::Ready((output, report))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Start {
    at: Instant,
    rss: Option<u64>,
    allocated: u64,
    freed: u64,
}

impl Start {
    fn now() -> Self {
        // RSS first: reading it allocates, and that is not the scope's doing.
        let rss = process_memory().ok().map(|memory| memory.rss);
        let (allocated, freed) = tracking::thread_totals();
        Self {
            at: Instant::now(),
            rss,
            allocated,
            freed,
        }
    }

    /// The report, given the scope's allocation counts (taken before this reads RSS).
    fn report(&self, name: &'static str, allocated: u64, freed: u64) -> MemoryReport {
        let rss_now = process_memory().ok().map(|memory| memory.rss);
        let rss_delta_bytes = match (self.rss, rss_now) {
            (Some(before), Some(after)) => after as i64 - before as i64,
            _ => 0,
        };
        let tracked = tracking::tracking_is_active();
        MemoryReport {
            name,
            rss_delta_bytes,
            allocated_bytes: tracked.then_some(allocated),
            live_bytes: tracked.then_some(allocated as i64 - freed as i64),
            duration: self.at.elapsed(),
        }
    }
}

impl MemoryReport {
    fn log(&self) {
        tracing::debug!(
            name = self.name,
            rss_delta_bytes = self.rss_delta_bytes,
            allocated_bytes = self.allocated_bytes,
            live_bytes = self.live_bytes,
            duration_ms = self.duration.as_secs_f64() * 1e3,
            "memory context"
        );
    }
}
