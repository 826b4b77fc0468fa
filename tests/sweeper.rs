//! The background sweeper removes expired entries so that they stop holding capacity.

use std::time::Duration;

use perf::{PerformanceConfig, PerformanceOptimizer, Tier};

#[tokio::test(start_paused = true)]
async fn the_sweeper_removes_expired_entries() {
    let (clock, mock) = perf::cache::Clock::mock();
    let mut config = PerformanceConfig::default();
    config.cache.sweep_interval = Duration::from_secs(30);
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .clock(clock)
        .build()
        .expect("valid");
    let _background = optimizer.start().expect("inside a runtime with timers");
    let cache = optimizer.cache();
    for i in 0..100 {
        cache
            .set(&format!("k{i}"), i, Tier::L2, Some(Duration::from_secs(10)))
            .await
            .expect("stored");
    }
    cache
        .set("lasting", 1, Tier::L2, Some(Duration::from_secs(3600)))
        .await
        .expect("stored");

    mock.increment(Duration::from_secs(11));
    // Nothing has been read, so only the sweeper can remove the expired entries.
    let mut stats = cache.stats();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats = cache.stats();
        if stats.l1.entries == Some(1) && stats.l2.entries == Some(1) {
            break;
        }
    }
    assert_eq!((stats.l1.entries, stats.l2.entries), (Some(1), Some(1)));
    assert_eq!(stats.l1.expirations + stats.l2.expirations, 200);
    assert_eq!(
        cache
            .get::<i32>("lasting", Tier::L1)
            .await
            .expect("ok")
            .as_deref(),
        Some(&1)
    );
}
