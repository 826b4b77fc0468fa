//! `#[cache_result]` when the source fails or slows: shared failures, fail-safe, timeouts.
//! Expiry runs on a mock clock and timeouts on paused tokio time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use perf::{PerformanceOptimizer, cache::Clock, cache_result};

fn mocked() -> (PerformanceOptimizer, Arc<perf::cache::Mock>) {
    let (clock, mock) = Clock::mock();
    let optimizer = PerformanceOptimizer::builder()
        .clock(clock)
        .build()
        .expect("valid");
    (optimizer, mock)
}

/// An application error: `Clone`, so every caller of a failed load gets the error itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum AdError {
    #[error("ad {0} not found")]
    NotFound(u64),
    #[error("cache: {0}")]
    Cache(String),
}

impl From<perf::Error> for AdError {
    fn from(error: perf::Error) -> Self {
        AdError::Cache(error.to_string())
    }
}

static MISSING_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(optimizer = optimizer, skip(optimizer))]
async fn missing_ad(optimizer: &PerformanceOptimizer, id: u64) -> Result<u64, AdError> {
    MISSING_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Err(AdError::NotFound(id))
}

#[tokio::test(start_paused = true)]
async fn every_caller_of_a_failed_load_gets_its_error_and_the_body_runs_once() {
    let (optimizer, _) = mocked();
    let calls = (0..100).map(|_| missing_ad(&optimizer, 7));
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(MISSING_RUNS.load(Ordering::SeqCst), 1);
    assert!(
        results.iter().all(|r| *r == Err(AdError::NotFound(7))),
        "a Clone error reaches every caller as itself: {:?}",
        results.first()
    );
}

static IO_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(optimizer = optimizer, skip(optimizer))]
async fn io_failure(optimizer: &PerformanceOptimizer, id: u64) -> std::io::Result<u64> {
    IO_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Err(std::io::Error::other(format!("disk {id} unreadable")))
}

#[tokio::test(start_paused = true)]
async fn an_error_that_is_not_clone_reaches_waiters_as_its_message() {
    let (optimizer, _) = mocked();
    let calls = (0..10).map(|_| io_failure(&optimizer, 3));
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(IO_RUNS.load(Ordering::SeqCst), 1);
    for result in results {
        let error = result.expect_err("failed");
        assert!(error.to_string().contains("disk 3 unreadable"), "{error}");
    }
}

static SOURCE_DOWN: AtomicBool = AtomicBool::new(false);
static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(
    ttl = "10s",
    cache_type = "l2",
    fail_safe = "1h",
    fail_safe_throttle = "30s",
    optimizer = optimizer,
    skip(optimizer)
)]
async fn price(optimizer: &PerformanceOptimizer, id: u64) -> Result<u64, AdError> {
    PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
    if SOURCE_DOWN.load(Ordering::SeqCst) {
        return Err(AdError::Cache("database down".into()));
    }
    Ok(id * 100)
}

#[tokio::test]
async fn with_fail_safe_an_outage_serves_the_last_value_and_spares_the_source() {
    let (optimizer, clock) = mocked();
    for id in 0..10 {
        assert_eq!(price(&optimizer, id).await, Ok(id * 100));
    }
    clock.increment(Duration::from_secs(11));
    SOURCE_DOWN.store(true, Ordering::SeqCst);
    for call in 0..1000 {
        let id = call % 10;
        assert_eq!(price(&optimizer, id).await, Ok(id * 100), "call {call}");
    }
    assert_eq!(
        PRICE_RUNS.load(Ordering::SeqCst),
        20,
        "ten loads, then one failed try per key within the throttle"
    );
    assert_eq!(optimizer.cache().stats().loads.stale_served, 10);
    SOURCE_DOWN.store(false, Ordering::SeqCst);
}

static HUNG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(
    ttl = "10s",
    fail_safe = "1h",
    timeout = "100ms",
    hard_timeout = "2s",
    optimizer = OPTIMIZER.0,
    skip(id)
)]
async fn slow_quote(id: u64) -> Result<u64, AdError> {
    let run = HUNG_RUNS.fetch_add(1, Ordering::SeqCst);
    if run > 0 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(id)
}

/// A fn whose arguments are all owned runs its load in a task, which needs a `'static` cache.
static OPTIMIZER: std::sync::LazyLock<(PerformanceOptimizer, Arc<perf::cache::Mock>)> =
    std::sync::LazyLock::new(mocked);

#[tokio::test(start_paused = true)]
async fn a_hung_body_yields_the_stale_value_at_the_soft_timeout() {
    assert_eq!(slow_quote(5).await, Ok(5));
    OPTIMIZER.1.increment(Duration::from_secs(11));
    let started = tokio::time::Instant::now();
    let calls = (0..10).map(|_| slow_quote(5));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result, Ok(5), "the stale value");
    }
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(HUNG_RUNS.load(Ordering::SeqCst), 2);
}

#[cache_result(hard_timeout = "50ms", optimizer = optimizer, skip(optimizer))]
async fn never_answers(optimizer: &PerformanceOptimizer, id: u64) -> Option<u64> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Some(id)
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_ends_a_call_with_no_value() {
    let (optimizer, _) = mocked();
    let started = tokio::time::Instant::now();
    assert_eq!(never_answers(&optimizer, 1).await, None);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(optimizer.cache().stats().loads.hard_timeouts, 1);
}
