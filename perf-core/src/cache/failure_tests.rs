//! The cache when its source fails or slows: shared failures, fail-safe, timeouts,
//! refresh-ahead, failure caching. Expiry runs on a mock clock and timeouts on paused tokio
//! time, so nothing here depends on how fast the machine is.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use super::tests::{MemoryRemote, SECOND, TestError, config, mocked, until_waiting};
use super::*;

/// A loader that counts its runs, waits `delay` (paused time), then fails or yields `value`.
async fn source(
    runs: &AtomicUsize,
    delay: Duration,
    fail: bool,
    value: u64,
) -> Result<u64, TestError> {
    runs.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    if fail {
        Err(TestError::Source("database down"))
    } else {
        Ok(value)
    }
}

fn fail_safe(tier: Tier) -> LoadOptions {
    LoadOptions::new(tier)
        .ttl(10 * SECOND)
        .fail_safe(3600 * SECOND)
        .fail_safe_throttle(30 * SECOND)
}

#[tokio::test(start_paused = true)]
async fn a_thousand_callers_of_a_failing_loader_share_one_failure() {
    let (cache, _) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let calls = (0..1000)
        .map(|_| cache.get_or_load("cold", Tier::L2, None, || source(&runs, SECOND, true, 0)));
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the loader ran once");
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1000);
    let own = results
        .iter()
        .filter(|r| **r == Err(TestError::Source("database down")))
        .count();
    assert_eq!(
        own, 1,
        "the leader got its own error, the others the shared one"
    );
    let loads = cache.stats().loads;
    assert_eq!(
        (
            loads.loader_runs,
            loads.loader_errors,
            loads.shared_failures
        ),
        (1, 1, 999)
    );
    assert_eq!(loads.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_failing_keys_run_a_hundred_loaders() {
    let (cache, _) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let calls = (0..1000).map(|i| {
        let key = format!("k{}", i % 100);
        let (cache, runs) = (&cache, &runs);
        async move {
            cache
                .get_or_load(&key, Tier::L1, None, || source(runs, SECOND, true, 0))
                .await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(runs.load(Ordering::SeqCst), 100);
    assert!(results.iter().all(Result::is_err));
}

#[tokio::test(start_paused = true)]
async fn waiters_get_a_clone_of_a_clone_error_when_it_is_shared_by_value() {
    let (cache, _) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = LoadOptions::new(Tier::L1);
    let sharing = ErrorSharing::by_clone();
    let calls = (0..10).map(|_| {
        cache
            .engine
            .load_with("k", &options, sharing, || source(&runs, SECOND, true, 0))
    });
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    for result in results {
        assert_eq!(
            result.map(|loaded| *loaded.value),
            Err(TestError::Source("database down"))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_fail_safe_a_failing_source_costs_no_errors_and_one_call_per_throttle() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = fail_safe(Tier::L2);
    for key in 0..100u64 {
        let loaded = cache
            .get_or_load_with(&format!("ad:{key}"), &options, || {
                source(&runs, Duration::ZERO, false, key * 7)
            })
            .await
            .expect("warm");
        assert_eq!(loaded.freshness, Freshness::Fresh);
    }
    clock.increment(11 * SECOND); // every TTL has passed
    runs.store(0, Ordering::SeqCst);
    let mut stale = 0;
    for call in 0..10_000u64 {
        let key = call % 100;
        let loaded = cache
            .get_or_load_with(&format!("ad:{key}"), &options, || {
                source(&runs, Duration::ZERO, true, 0)
            })
            .await
            .expect("fail-safe: never an error");
        assert_eq!(*loaded.value, key * 7, "the value that was stored");
        stale += u64::from(loaded.is_stale());
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        100,
        "one try per key, then the throttle holds the source off"
    );
    assert_eq!(stale, 100, "the failed tries returned the stale value");

    // The throttle passes; the source has healed: fresh values from the next call on.
    clock.increment(31 * SECOND);
    for key in 0..100u64 {
        let loaded = cache
            .get_or_load_with(&format!("ad:{key}"), &options, || {
                source(&runs, Duration::ZERO, false, key * 7 + 1)
            })
            .await
            .expect("healed");
        assert_eq!(
            (*loaded.value, loaded.freshness),
            (key * 7 + 1, Freshness::Fresh)
        );
    }
    assert_eq!(cache.stats().loads.stale_served, 100);
}

#[tokio::test(start_paused = true)]
async fn without_fail_safe_an_expired_value_is_not_served() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = LoadOptions::new(Tier::L1).ttl(10 * SECOND);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 1))
        .await
        .expect("warm");
    clock.increment(11 * SECOND);
    let failed = cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
        .await;
    assert_eq!(
        failed.map(|l| *l.value),
        Err(TestError::Source("database down"))
    );
    assert_eq!(cache.get::<u64>("k", Tier::L1).await.expect("ok"), None);
}

#[tokio::test(start_paused = true)]
async fn a_hung_loader_gives_way_to_the_stale_value_at_the_soft_timeout_and_fills_the_cache_later()
{
    let (cache, clock) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let options = fail_safe(Tier::L2)
        .soft_timeout(Duration::from_millis(100))
        .hard_timeout(10 * SECOND);
    let load = |delay: Duration, value: u64| {
        let runs = Arc::clone(&runs);
        move || async move { source(&runs, delay, false, value).await }
    };
    cache
        .get_or_load_detached("k", &options, load(Duration::ZERO, 1))
        .await
        .expect("warm");
    clock.increment(11 * SECOND);

    let started = tokio::time::Instant::now();
    let callers = (0..10).map(|_| cache.get_or_load_detached("k", &options, load(5 * SECOND, 2)));
    for loaded in futures_util::future::join_all(callers).await {
        let loaded = loaded.expect("stale, not an error");
        assert_eq!((*loaded.value, loaded.freshness), (1, Freshness::Stale));
    }
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "every caller returned at the soft timeout"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2, "warm-up and one slow load");

    // The load went on in its task and stored its value.
    tokio::time::sleep(5 * SECOND).await;
    let fresh = cache
        .get_or_load_detached("k", &options, load(Duration::ZERO, 3))
        .await
        .expect("fresh");
    assert_eq!((*fresh.value, fresh.freshness), (2, Freshness::Fresh));
    let loads = cache.stats().loads;
    assert_eq!((loads.soft_timeouts, loads.stale_served), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn a_hung_loader_without_a_stale_value_ends_in_loader_timeout_at_the_hard_timeout() {
    let (cache, _) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let options = LoadOptions::new(Tier::L1)
        .soft_timeout(Duration::from_millis(100))
        .hard_timeout(2 * SECOND);
    let hung = || {
        let runs = Arc::clone(&runs);
        move || async move { source(&runs, 3600 * SECOND, false, 1).await }
    };
    let started = tokio::time::Instant::now();
    let callers = (0..5).map(|_| cache.get_or_load_detached("k", &options, hung()));
    for result in futures_util::future::join_all(callers).await {
        let error = result.map(|l| *l.value).expect_err("no value in time");
        assert_eq!(
            error,
            TestError::Cache("the loader gave no value within its hard timeout of 2s".into())
        );
    }
    assert_eq!(started.elapsed(), 2 * SECOND);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Given up at the hard timeout: the next call starts a new load.
    tokio::task::yield_now().await;
    assert_eq!(cache.stats().loads.in_flight, 0);

    // Inline loads (borrowing loaders) stop at the hard timeout too.
    let inline_runs = AtomicUsize::new(0);
    let inline = cache
        .get_or_load_with("j", &options, || {
            source(&inline_runs, 3600 * SECOND, false, 1)
        })
        .await;
    assert!(matches!(inline, Err(TestError::Cache(m)) if m.contains("hard timeout")));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_cancel_a_detached_load() {
    let (cache, _) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let options = LoadOptions::new(Tier::L1).hard_timeout(10 * SECOND);
    let slow = {
        let runs = Arc::clone(&runs);
        move || async move { source(&runs, SECOND, false, 5).await }
    };
    let dropped =
        tokio::time::timeout(SECOND / 10, cache.get_or_load_detached("k", &options, slow)).await;
    assert!(dropped.is_err(), "the caller gave up");
    tokio::time::sleep(SECOND).await;
    assert_eq!(
        cache.get::<u64>("k", Tier::L1).await.expect("ok"),
        Some(Arc::new(5)),
        "the load finished in its task and filled the cache"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_keeps_a_hot_key_from_ever_missing() {
    let (cache, clock) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let options = LoadOptions::new(Tier::L2)
        .ttl(10 * SECOND)
        .eager_refresh(0.8);
    let load = || {
        let runs = Arc::clone(&runs);
        move || async move {
            let run = runs.load(Ordering::SeqCst) as u64;
            source(&runs, Duration::from_millis(50), false, run).await
        }
    };
    cache
        .get_or_load_detached("hot", &options, load())
        .await
        .expect("warm");
    let misses_after_warmup = cache.stats().l1.misses;
    // Read every 100 ms for 10 TTLs.
    for _ in 0..1000 {
        clock.increment(SECOND / 10);
        tokio::time::sleep(SECOND / 10).await;
        let loaded = cache
            .get_or_load_detached("hot", &options, load())
            .await
            .expect("a value");
        assert_eq!(loaded.freshness, Freshness::Fresh);
    }
    let stats = cache.stats();
    assert_eq!(stats.l1.misses, misses_after_warmup, "no read missed");
    let runs = runs.load(Ordering::SeqCst);
    assert!(
        (11..=14).contains(&runs),
        "about one load per TTL (at 80% of it): {runs}"
    );
    assert_eq!(stats.loads.refreshes as usize, runs - 1);
}

#[tokio::test(start_paused = true)]
async fn inline_refresh_ahead_is_run_by_one_caller_while_the_others_keep_the_value() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = LoadOptions::new(Tier::L1)
        .ttl(10 * SECOND)
        .eager_refresh(0.5);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 1))
        .await
        .expect("warm");
    clock.increment(6 * SECOND);
    let calls =
        (0..10).map(|_| cache.get_or_load_with("k", &options, || source(&runs, SECOND, false, 2)));
    let values: Vec<u64> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|loaded| *loaded.expect("a value").value)
        .collect();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(
        values.iter().filter(|v| **v == 2).count(),
        1,
        "the refresher's"
    );
    assert_eq!(
        values.iter().filter(|v| **v == 1).count(),
        9,
        "the current value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_current_value_and_waits_a_throttle_before_trying_again() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = LoadOptions::new(Tier::L1)
        .ttl(100 * SECOND)
        .eager_refresh(0.5)
        .fail_safe_throttle(10 * SECOND);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 1))
        .await
        .expect("warm");
    clock.increment(60 * SECOND);
    for _ in 0..50 {
        let loaded = cache
            .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
            .await
            .expect("the current value");
        assert_eq!(*loaded.value, 1);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one failed refresh");
    clock.increment(11 * SECOND);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
        .await
        .expect("the current value");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "tried again after the throttle"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_ttl_hands_a_burst_the_failure_without_running_the_loader() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = LoadOptions::new(Tier::L1).failure_ttl(5 * SECOND);
    let first = cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
        .await;
    assert!(first.is_err());
    for _ in 0..100 {
        let burst = cache
            .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 1))
            .await;
        assert!(matches!(burst, Err(TestError::Cache(m)) if m.contains("database down")));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    clock.increment(6 * SECOND);
    let healed = cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 1))
        .await
        .expect("the failure has expired: loaded again");
    assert_eq!(*healed.value, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_values_are_served_from_l2_after_l1_lost_them() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = fail_safe(Tier::L2);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 9))
        .await
        .expect("warm");
    cache.clear(Tier::L1).await.expect("cleared");
    clock.increment(11 * SECOND);
    let loaded = cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
        .await
        .expect("stale from L2");
    assert_eq!((*loaded.value, loaded.freshness), (9, Freshness::Stale));
    assert_eq!(
        cache.get::<u64>("k", Tier::L2).await.expect("ok"),
        Some(Arc::new(9)),
        "re-armed for the throttle period"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_values_reach_a_second_instance_through_the_remote_tier() {
    let remote = Arc::new(MemoryRemote::default());
    let instance = || {
        let (clock, _) = quanta::Clock::mock();
        MultiLevelCache::builder(&config())
            .remote_tier(Arc::clone(&remote) as Arc<dyn RemoteTier>)
            .clock(clock)
            .build()
            .expect("valid")
    };
    let (a, b) = (instance(), instance());
    // A writes a value whose TTL has passed but whose fail-safe period has not, as it would
    // look an hour after it was written with `fail_safe = 2h`.
    let now_ms = codec::UnixTimes::after(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let times = codec::UnixTimes {
        fresh_until: now_ms.expires_at - 3_600_000,
        expires_at: now_ms.expires_at - 3_600_000,
        stale_until: now_ms.expires_at + 3_600_000,
    };
    let bytes = a
        .engine
        .codec
        .encode(&41u64, times, "shared", codec::Seal::Default)
        .expect("encodes");
    remote.put("shared", bytes);
    drop(a);

    let runs = AtomicUsize::new(0);
    let options = fail_safe(Tier::Redis);
    assert_eq!(
        b.get::<u64>("shared", Tier::Redis).await.expect("ok"),
        None,
        "expired for a plain read"
    );
    let loaded = b
        .get_or_load_with("shared", &options, || {
            source(&runs, Duration::ZERO, true, 0)
        })
        .await
        .expect("stale from the remote tier");
    assert_eq!((*loaded.value, loaded.freshness), (41, Freshness::Stale));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_value_written_with_fail_safe_keeps_its_stale_period_in_the_remote_tier() {
    let remote = Arc::new(MemoryRemote::default());
    let cache = MultiLevelCache::builder(&config())
        .remote_tier(Arc::clone(&remote) as Arc<dyn RemoteTier>)
        .build()
        .expect("valid");
    cache
        .get_or_load_with("k", &fail_safe(Tier::Redis), || async {
            Ok::<_, TestError>(1u64)
        })
        .await
        .expect("stored");
    let (bytes, _) = remote
        .map
        .lock()
        .get("k")
        .cloned()
        .expect("in the remote tier");
    let decoded = cache
        .engine
        .codec
        .decode::<u64>(&bytes, "k")
        .expect("decodes");
    let ttl_left = codec::remaining_until(decoded.times.expires_at);
    let stale_left = codec::remaining_until(decoded.times.stale_until);
    assert!(
        ttl_left <= 10 * SECOND && ttl_left > 8 * SECOND,
        "{ttl_left:?}"
    );
    assert!(stale_left > 3600 * SECOND, "{stale_left:?}");
}

#[tokio::test(start_paused = true)]
async fn jittered_ttls_spread_expiry_out() {
    let (cache, clock) = mocked(&config());
    let options = LoadOptions::new(Tier::L1).ttl(100 * SECOND).jitter(0.5);
    for key in 0..200 {
        cache
            .get_or_load_with(&format!("k{key}"), &options, || async {
                Ok::<_, TestError>(1u8)
            })
            .await
            .expect("stored");
    }
    clock.increment(75 * SECOND);
    let live = (0..200)
        .filter(|key| {
            cache
                .get_local::<u8>(&format!("k{key}"), Tier::L1)
                .expect("ok")
                .is_some()
        })
        .count();
    assert!(
        (20..180).contains(&live),
        "a TTL of 50-100 s: about half live at 75 s, not all or none: {live}"
    );
    clock.increment(26 * SECOND);
    assert_eq!(
        cache.sweep_expired(),
        live as u64,
        "the rest expired by 101 s: none outlives the configured TTL"
    );
    assert_eq!(cache.stats().l1.entries, Some(0));
}

#[test]
fn synchronous_loads_share_failures_and_fall_back_on_stale_values() {
    let (cache, clock) = mocked(&config());
    let options = fail_safe(Tier::L2);
    let warm = cache
        .engine
        .load_local_with("k", &options, ErrorSharing::by_message(), || {
            Ok::<_, TestError>(3u64)
        })
        .expect("warm");
    assert_eq!(*warm.value, 3);
    clock.increment(11 * SECOND);
    let stale = cache
        .engine
        .load_local_with("k", &options, ErrorSharing::by_message(), || {
            Err::<u64, _>(TestError::Source("down"))
        })
        .expect("stale");
    assert_eq!((*stale.value, stale.freshness), (3, Freshness::Stale));

    let runs = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    cache.get_or_load_local("cold", Tier::L1, None, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        until_waiting(&cache, "cold", 3);
                        Err::<u64, _>(TestError::Source("down"))
                    })
                })
            })
            .collect();
        for caller in callers {
            assert!(caller.join().expect("no panic").is_err());
        }
    });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one loader for the four callers"
    );
}

#[test]
fn options_that_cannot_work_together_are_refused_before_loading() {
    let (cache, _) = mocked(&config());
    let options = LoadOptions::new(Tier::L1)
        .soft_timeout(5 * SECOND)
        .hard_timeout(SECOND);
    let refused = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(cache.get_or_load_with("k", &options, || async { Ok::<_, TestError>(1u8) }));
    assert!(
        matches!(refused, Err(TestError::Cache(m)) if m.contains("soft_timeout")),
        "refused naming the setting"
    );
    assert_eq!(cache.stats().loads.loader_runs, 0);
}

#[tokio::test(start_paused = true)]
async fn a_detached_loader_that_panics_fails_its_callers_and_frees_the_key() {
    let (cache, _) = mocked(&config());
    let options = LoadOptions::new(Tier::L1).hard_timeout(10 * SECOND);
    let panicking = || async {
        tokio::time::sleep(SECOND).await;
        if std::hint::black_box(true) {
            panic!("loader bug");
        }
        Ok::<u64, TestError>(1)
    };
    let calls = (0..3).map(|_| cache.get_or_load_detached("k", &options, panicking));
    for result in futures_util::future::join_all(calls).await {
        let error = result.map(|l| *l.value).expect_err("no value");
        assert!(
            matches!(&error, TestError::Cache(m) if m.contains("panicked")),
            "{error:?}"
        );
    }
    let next = cache
        .get_or_load_detached("k", &options, || async { Ok::<_, TestError>(2u64) })
        .await
        .expect("the key is free again");
    assert_eq!(*next.value, 2);
}

#[tokio::test(start_paused = true)]
async fn a_detached_load_given_up_at_its_hard_timeout_rearms_the_stale_value_by_itself() {
    let (cache, clock) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let options = fail_safe(Tier::L1)
        .soft_timeout(Duration::from_millis(50))
        .hard_timeout(SECOND);
    let load = |delay: Duration| {
        let runs = Arc::clone(&runs);
        move || async move { source(&runs, delay, false, 1).await }
    };
    cache
        .get_or_load_detached("k", &options, load(Duration::ZERO))
        .await
        .expect("warm");
    clock.increment(11 * SECOND);
    let stale = cache
        .get_or_load_detached("k", &options, load(3600 * SECOND))
        .await
        .expect("stale at the soft timeout");
    assert!(stale.is_stale());
    // Nobody waits any more when the task gives up at its hard timeout; it re-arms the value.
    tokio::time::sleep(2 * SECOND).await;
    let started = tokio::time::Instant::now();
    let served = cache
        .get_or_load_detached("k", &options, load(3600 * SECOND))
        .await
        .expect("served");
    assert_eq!(*served.value, 1);
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait: re-armed");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the source was not asked again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_throttle_is_capped_not_an_overflow() {
    let (cache, clock) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let options = fail_safe(Tier::L1).fail_safe_throttle(Duration::MAX);
    cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, false, 4))
        .await
        .expect("warm");
    clock.increment(11 * SECOND);
    let stale = cache
        .get_or_load_with("k", &options, || source(&runs, Duration::ZERO, true, 0))
        .await
        .expect("stale, re-armed without overflowing");
    assert_eq!((*stale.value, stale.freshness), (4, Freshness::Stale));
    let refresh = LoadOptions::new(Tier::L1)
        .ttl(100 * SECOND)
        .eager_refresh(0.5)
        .fail_safe_throttle(Duration::MAX);
    cache
        .get_or_load_with("r", &refresh, || source(&runs, Duration::ZERO, false, 1))
        .await
        .expect("warm");
    clock.increment(60 * SECOND);
    let kept = cache
        .get_or_load_with("r", &refresh, || source(&runs, Duration::ZERO, true, 0))
        .await
        .expect("the current value after a failed refresh");
    assert_eq!(*kept.value, 1);
}
