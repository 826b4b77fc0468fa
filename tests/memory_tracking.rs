//! `TrackingAllocator` as the global allocator: exact counts, scopes, and futures that move
//! between threads. Its own test binary, since it sets the global allocator.

use perf::memory::{TrackingAllocator, memory_context, track_memory, tracked_stats};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator::system();

#[test]
fn a_scope_counts_exactly_what_it_allocated_and_what_is_still_live() {
    let scope = memory_context("exact");
    let kept: Vec<u8> = Vec::with_capacity(1000);
    let dropped = Box::new([7u64; 16]);
    drop(dropped);
    let report = scope.finish();
    assert_eq!(report.name, "exact");
    assert_eq!(report.allocated_bytes, Some(1000 + 128));
    assert_eq!(
        report.live_bytes,
        Some(1000),
        "the Box was freed, the Vec is live"
    );
    drop(kept);
}

#[test]
fn the_process_totals_and_peak_are_kept() {
    let block = vec![1u8; 4 << 20];
    let during = tracked_stats().expect("the tracking allocator is global");
    assert!(during.live_bytes >= 4 << 20, "{during:?}");
    drop(block);
    let after = tracked_stats().expect("active");
    assert!(after.freed_bytes >= during.freed_bytes + (4 << 20));
    assert!(after.peak_live_bytes >= during.live_bytes);
    assert_eq!(after.live_bytes, after.allocated_bytes - after.freed_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_future_is_counted_on_every_thread_it_runs_on() {
    let (kept, report) = track_memory("moving", async {
        let mut kept = Vec::new();
        for _ in 0..20 {
            kept.push(vec![0u8; 10_000]);
            let freed = vec![0u8; 500];
            drop(freed);
            tokio::task::yield_now().await;
        }
        kept
    })
    .await;
    // The outer Vec grew by doubling to 32 slots of 24 bytes: 4 + 8 + 16 + 32 slots.
    let outer_allocated: u64 = (4 + 8 + 16 + 32) * 24;
    let outer_freed: u64 = (4 + 8 + 16) * 24;
    assert_eq!(
        report.allocated_bytes,
        Some(20 * (10_000 + 500) + outer_allocated)
    );
    assert_eq!(
        report.live_bytes,
        Some((20 * 10_000 + outer_allocated - outer_freed) as i64)
    );
    drop(kept);
}
