//! The memory manager against the obvious alternatives, in the same run, printing the ratios.
//!
//! - A usage sample (`MemoryManager::usage`: `/proc/self/statm` and `/proc/meminfo`) against
//!   sysinfo refreshing this process in full and the machine's memory. Target: at most 50 µs.
//! - `TrackingAllocator` around the system allocator: one alloc + free of 64 bytes against the
//!   system allocator alone, and against counting into one shared atomic, on 1 and 2 threads.
//!   Target: at most 1.5x the system allocator on 2 threads.
//!
//! `cargo bench --bench memory`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use common::{median_ns, slowest_thread};
use criterion::Criterion;
use perf::{PerformanceConfig, memory::MemoryManager, memory::TrackingAllocator};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System as SysinfoSystem};

/// The design `TrackingAllocator` avoids: every thread counting into one atomic.
struct OneCounter {
    bytes: AtomicU64,
}

// SAFETY: passes every call to the system allocator unchanged.
unsafe impl GlobalAlloc for OneCounter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.bytes.fetch_add(layout.size() as u64, Ordering::SeqCst);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        self.bytes.fetch_sub(layout.size() as u64, Ordering::SeqCst);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(block, layout) }
    }
}

static TRACKING: TrackingAllocator = TrackingAllocator::system();
static ONE_COUNTER: OneCounter = OneCounter {
    bytes: AtomicU64::new(0),
};

/// Time for each of `threads` threads to make `iters` alloc + free pairs, started together.
fn alloc_free(threads: usize, iters: u64, allocator: &(dyn GlobalAlloc + Sync)) -> Duration {
    let layout = Layout::from_size_align(64, 8).unwrap();
    slowest_thread(threads, |_, barrier| {
        barrier.wait();
        let start = Instant::now();
        for _ in 0..iters {
            // SAFETY: a non-zero-sized layout, freed with the same layout.
            unsafe {
                let block = allocator.alloc(layout);
                black_box(block);
                allocator.dealloc(block, layout);
            }
        }
        start.elapsed()
    })
}

fn main() {
    let manager = MemoryManager::new(&PerformanceConfig::default());
    let mut system = SysinfoSystem::new();
    let pid = sysinfo::get_current_pid().unwrap();

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    let mut group = c.benchmark_group("memory_sample");
    group.bench_function("perf_usage", |b| b.iter(|| manager.usage().unwrap()));
    group.bench_function("sysinfo_refresh", |b| {
        b.iter(|| {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::everything(),
            );
            system.refresh_memory();
            black_box(system.process(pid).map(|p| p.memory()));
        })
    });
    group.finish();

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("alloc_free_{threads}_thread"));
        group.bench_function("system", |b| {
            b.iter_custom(|iters| alloc_free(threads, iters, &System))
        });
        group.bench_function("tracking", |b| {
            b.iter_custom(|iters| alloc_free(threads, iters, &TRACKING))
        });
        group.bench_function("one_counter", |b| {
            b.iter_custom(|iters| alloc_free(threads, iters, &ONE_COUNTER))
        });
        group.finish();
    }
    c.final_summary();

    println!("== ratios (medians) ==");
    if let (Some(ours), Some(theirs)) = (
        median_ns("memory_sample", "perf_usage"),
        median_ns("memory_sample", "sysinfo_refresh"),
    ) {
        println!(
            "usage sample: perf {:.1} us (target <= 50 us), sysinfo full refresh {:.1} us: {:.2}x faster",
            ours / 1e3,
            theirs / 1e3,
            theirs / ours
        );
    }
    for threads in [1, 2] {
        let group = format!("alloc_free_{threads}_thread");
        let m = |bench: &str| median_ns(&group, bench);
        if let (Some(system), Some(tracking), Some(one)) =
            (m("system"), m("tracking"), m("one_counter"))
        {
            println!(
                "alloc+free, {threads} thread(s): system {system:.1} ns, tracking {tracking:.1} ns \
                 ({:.2}x the system's; target <= 1.5x on 2 threads), one shared counter {one:.1} ns \
                 ({:.2}x)",
                tracking / system,
                one / system
            );
        }
    }
}
