//! `allocation_tracking_enabled = false` at install stops the tracking allocator counting.
//! Its own test binary: the switch is process-wide and one way.

use perf::{
    PerformanceConfig, PerformanceOptimizer,
    memory::{TrackingAllocator, memory_context, tracked_stats},
};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator::system();

#[tokio::test]
async fn tracking_switched_off_at_install_reports_nothing() {
    let warm = Box::new([0u8; 100]);
    assert!(tracked_stats().is_some(), "counting before install");
    drop(warm);
    let mut config = PerformanceConfig::default();
    config.memory.allocation_tracking_enabled = false;
    PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid")
        .install()
        .expect("installed");
    assert_eq!(tracked_stats(), None);
    let scope = memory_context("off");
    let block = vec![1u8; 1000];
    let report = scope.finish();
    assert_eq!((report.allocated_bytes, report.live_bytes), (None, None));
    drop(block);
}
