//! Behaviour of the cache as a whole, with a mock clock and an in-memory remote tier.

use crate::config::CacheConfig;
use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use parking_lot::Mutex;
use proptest::prelude::*;

use super::*;

/// A loader error for the tests: comparable, and able to carry the cache's own failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum TestError {
    #[error("{0}")]
    Source(&'static str),
    #[error("cache: {0}")]
    Cache(String),
}

impl From<Error> for TestError {
    fn from(error: Error) -> Self {
        TestError::Cache(error.to_string())
    }
}

pub(super) fn config() -> PerformanceConfig {
    PerformanceConfig {
        cache: CacheConfig {
            max_size: 1000,
            l2_max_bytes: 1 << 20,
            max_value_bytes: 64 * 1024,
            max_key_bytes: 128,
            compression_threshold_bytes: 256,
            ..CacheConfig::default()
        },
        ..PerformanceConfig::default()
    }
}

pub(super) fn mocked(config: &PerformanceConfig) -> (MultiLevelCache, Arc<quanta::Mock>) {
    let (clock, mock) = quanta::Clock::mock();
    let cache = MultiLevelCache::builder(config)
        .clock(clock)
        .build()
        .expect("valid config");
    (cache, mock)
}

/// Blocks until `waiters` callers wait on the load of `key`: a loader calls it, so that
/// coalescing is tested by what joined, not by how long the loader took.
pub(super) fn until_waiting(cache: &MultiLevelCache, key: &str, waiters: usize) {
    let start = std::time::Instant::now();
    while cache.engine.flights.waiters(key) < waiters {
        assert!(
            start.elapsed() < 10 * SECOND,
            "{waiters} callers never joined the load of {key}"
        );
        std::thread::yield_now();
    }
}

/// [`until_waiting`] for an async loader.
pub(super) async fn until_waiting_async(cache: &MultiLevelCache, key: &str, waiters: usize) {
    let start = std::time::Instant::now();
    while cache.engine.flights.waiters(key) < waiters {
        assert!(
            start.elapsed() < 10 * SECOND,
            "{waiters} callers never joined the load of {key}"
        );
        tokio::task::yield_now().await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

pub(super) const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn set_then_get_in_each_tier() {
    let (cache, _) = mocked(&config());
    for tier in [Tier::L1, Tier::L2] {
        let key = format!("k-{tier}");
        cache
            .set(&key, vec![1u8, 2, 3], tier, None)
            .await
            .expect("stored");
        assert_eq!(
            cache.get::<Vec<u8>>(&key, tier).await.expect("ok"),
            Some(Arc::new(vec![1, 2, 3]))
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.l1.hits, 2);
    assert_eq!(stats.l2.entries, Some(1), "only the L2 write reached L2");
    assert_eq!(stats.l1.entries, Some(2));
}

#[tokio::test]
async fn l1_holds_values_without_serde() {
    #[derive(Clone, Debug, PartialEq)]
    struct Model(Arc<Vec<f32>>);
    let (cache, _) = mocked(&config());
    cache
        .set_l1_local("model", Model(Arc::new(vec![0.5; 4])), None)
        .expect("stored");
    assert_eq!(
        cache.get_l1_local::<Model>("model").expect("ok"),
        Some(Arc::new(Model(Arc::new(vec![0.5; 4]))))
    );
    let loaded = cache
        .get_or_load_l1("model2", None, || async {
            Ok::<_, TestError>(Model(Arc::new(vec![1.0])))
        })
        .await;
    assert_eq!(loaded, Ok(Arc::new(Model(Arc::new(vec![1.0])))));
    assert!(cache.get_l1_local::<Model>("model2").expect("ok").is_some());
}

#[tokio::test]
async fn an_entry_is_a_miss_once_its_ttl_has_passed() {
    let (cache, mock) = mocked(&config());
    cache
        .set("l1", 1u32, Tier::L1, Some(10 * SECOND))
        .await
        .expect("stored");
    cache
        .set("l2", 2u32, Tier::L2, Some(10 * SECOND))
        .await
        .expect("stored");
    mock.increment(10 * SECOND - Duration::from_nanos(1));
    assert_eq!(
        cache.get::<u32>("l1", Tier::L1).await.expect("ok"),
        Some(Arc::new(1))
    );
    assert_eq!(
        cache.get::<u32>("l2", Tier::L2).await.expect("ok"),
        Some(Arc::new(2))
    );
    mock.increment(Duration::from_nanos(1));
    assert_eq!(cache.get::<u32>("l1", Tier::L1).await.expect("ok"), None);
    assert_eq!(cache.get::<u32>("l2", Tier::L2).await.expect("ok"), None);
    let stats = cache.stats();
    assert_eq!(
        stats.l1.expirations, 2,
        "both L1 copies were found expired and removed"
    );
    assert_eq!(stats.l2.expirations, 1);
    assert_eq!(stats.l1.entries, Some(0));
    assert_eq!(stats.l2.entries, Some(0));
}

#[tokio::test]
async fn promotion_keeps_the_remaining_ttl() {
    let (cache, mock) = mocked(&config());
    cache
        .set("ad", "text".to_string(), Tier::L2, Some(10 * SECOND))
        .await
        .expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    mock.increment(6 * SECOND);
    // An L2 hit copies the value into L1 ...
    assert_eq!(
        cache.get::<String>("ad", Tier::L2).await.expect("ok"),
        Some(Arc::new("text".to_string()))
    );
    assert_eq!(cache.stats().l2.hits, 1);
    assert_eq!(
        cache.get::<String>("ad", Tier::L1).await.expect("ok"),
        Some(Arc::new("text".to_string()))
    );
    // ... with the 4 s it had left, not a fresh 10 s.
    mock.increment(4 * SECOND);
    assert_eq!(cache.get::<String>("ad", Tier::L1).await.expect("ok"), None);
}

#[tokio::test]
async fn sweep_removes_expired_entries_from_both_tiers() {
    let (cache, mock) = mocked(&config());
    for i in 0..10 {
        let ttl = if i < 6 { 5 * SECOND } else { 60 * SECOND };
        cache
            .set(&format!("k{i}"), i, Tier::L2, Some(ttl))
            .await
            .expect("stored");
    }
    mock.increment(5 * SECOND);
    assert_eq!(
        cache.sweep_expired(),
        12,
        "six entries in each of L1 and L2"
    );
    let stats = cache.stats();
    assert_eq!((stats.l1.entries, stats.l2.entries), (Some(4), Some(4)));
    assert_eq!(stats.l1.expirations + stats.l2.expirations, 12);
}

#[tokio::test]
async fn bad_input_is_an_error_naming_the_limit_and_stores_nothing() {
    let (cache, _) = mocked(&config());
    let long_key = "k".repeat(129);
    let err = cache
        .set(&long_key, 1u8, Tier::L1, None)
        .await
        .expect_err("key too long");
    assert!(err.to_string().contains("max_key_bytes = 128"), "{err}");
    assert!(cache.get::<u8>(&long_key, Tier::L1).await.is_err());

    let err = cache
        .set("zero", 1u8, Tier::L1, Some(Duration::ZERO))
        .await
        .expect_err("zero TTL");
    assert!(matches!(err, Error::ZeroTtl));

    cache
        .set("big", vec![0u8; 10], Tier::L2, None)
        .await
        .expect("stored");
    let noise: Vec<u64> = (0..20_000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let err = cache
        .set("big", noise, Tier::L2, None)
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("max_value_bytes = 65536"), "{err}");
    assert_eq!(
        cache.get::<Vec<u8>>("big", Tier::L2).await.expect("ok"),
        Some(Arc::new(vec![0u8; 10])),
        "the refused write lost nothing"
    );
    assert_eq!(cache.get::<u8>("zero", Tier::L1).await.expect("ok"), None);
}

#[tokio::test]
async fn get_or_load_returns_uncacheable_values_uncached() {
    let (cache, _) = mocked(&config());
    let long_key = "k".repeat(200);
    let loaded = cache
        .get_or_load(&long_key, Tier::L2, None, || async {
            Ok::<_, TestError>(5u8)
        })
        .await;
    assert_eq!(loaded, Ok(Arc::new(5)));
    assert_eq!(cache.stats().l1.refused, 1);
    assert_eq!(cache.stats().loads.loader_runs, 1);
}

#[tokio::test]
async fn a_value_read_as_another_type_is_a_counted_miss() {
    let (cache, _) = mocked(&config());
    cache.set("n", 7u32, Tier::L1, None).await.expect("stored");
    assert_eq!(cache.get::<String>("n", Tier::L1).await.expect("ok"), None);
    assert_eq!(cache.get_l1_local::<u64>("n").expect("ok"), None);
    let stats = cache.stats();
    assert_eq!(stats.l1.type_mismatches, 2);
    assert_eq!(stats.l1.misses, 2);
    assert_eq!(
        cache.get::<u32>("n", Tier::L1).await.expect("ok"),
        Some(Arc::new(7)),
        "still there"
    );
}

#[tokio::test]
async fn corrupt_l2_bytes_are_a_counted_miss_and_removed() {
    let (cache, mock) = mocked(&config());
    let mut stamp = cache
        .engine
        .plan_write("bad", Some(60 * SECOND))
        .expect("valid")
        .stamp;
    stamp.shared = false;
    let entry = entry::L2Entry {
        bytes: Arc::from(&b"\x01\x00garbage"[..]),
        stamp,
    };
    cache.engine.l2.insert("bad", entry).expect("fits");
    mock.increment(SECOND);
    assert_eq!(
        cache.get::<String>("bad", Tier::L2).await.expect("ok"),
        None
    );
    let stats = cache.stats();
    assert_eq!(stats.l2.decode_errors, 1);
    assert_eq!(stats.l2.misses, 1);
    assert_eq!(stats.l2.entries, Some(0), "the bad entry is gone");
    // A loader then fills the key with a good value.
    let loaded = cache
        .get_or_load("bad", Tier::L2, None, || async {
            Ok::<_, TestError>("good".to_string())
        })
        .await;
    assert_eq!(loaded, Ok(Arc::new("good".to_string())));
}

#[tokio::test]
async fn delete_prefix_and_clear() {
    let (cache, _) = mocked(&config());
    for key in ["user:1", "user:2", "ad:1"] {
        cache
            .set(key, key.to_string(), Tier::L2, None)
            .await
            .expect("stored");
    }
    assert!(cache.delete("ad:1").await.expect("ok"));
    assert!(!cache.delete("ad:1").await.expect("ok"));
    assert_eq!(
        cache.get::<String>("ad:1", Tier::L2).await.expect("ok"),
        None
    );
    assert_eq!(
        cache.invalidate_prefix("user:").await.expect("ok"),
        4,
        "two keys in two tiers"
    );
    assert_eq!(cache.stats().l2.entries, Some(0));

    cache.set("a", 1u8, Tier::L2, None).await.expect("stored");
    cache.clear(Tier::L2).await.expect("cleared");
    assert_eq!(cache.stats().l2.entries, Some(0));
    assert_eq!(cache.stats().l1.entries, Some(1), "clearing L2 leaves L1");
    cache.clear_all().await.expect("cleared");
    assert_eq!(cache.stats().l1.entries, Some(0));
}

#[test]
fn tier_names_parse() {
    assert_eq!("l1".parse::<Tier>().expect("ok"), Tier::L1);
    assert_eq!("Redis".parse::<Tier>().expect("ok"), Tier::Redis);
    let err = "disk".parse::<Tier>().expect_err("unknown");
    assert!(err.to_string().contains("\"disk\""), "{err}");
}

// ----- coalescing -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let (cache, _) = mocked(&config());
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, runs, barrier) = (cache.clone(), Arc::clone(&runs), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_load("cold", Tier::L2, None, || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        until_waiting_async(&cache, "cold", 999).await;
                        Ok::<_, TestError>(vec![42u64; 16])
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(
            caller.await.expect("no panic"),
            Ok(Arc::new(vec![42u64; 16]))
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let loads = cache.stats().loads;
    assert_eq!((loads.loader_runs, loads.coalesced), (1, 999));
    assert_eq!(loads.in_flight, 0);
}

#[tokio::test]
async fn a_loader_error_is_returned_and_not_cached() {
    let (cache, _) = mocked(&config());
    let first = cache
        .get_or_load("k", Tier::L2, None, || async {
            Err::<u8, _>(TestError::Source("db down"))
        })
        .await;
    assert_eq!(first, Err(TestError::Source("db down")));
    let second = cache
        .get_or_load("k", Tier::L2, None, || async { Ok::<_, TestError>(1u8) })
        .await;
    assert_eq!(
        second,
        Ok(Arc::new(1)),
        "the error was not cached: the second loader ran"
    );
    assert_eq!(cache.stats().loads.loader_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn waiters_of_a_failed_loader_share_its_failure() {
    let (cache, _) = mocked(&config());
    let leader = cache.get_or_load("k", Tier::L1, None, || async {
        tokio::time::sleep(SECOND).await;
        Err::<u8, _>(TestError::Source("leader failed"))
    });
    let waiter = async {
        tokio::task::yield_now().await;
        cache
            .get_or_load("k", Tier::L1, None, || async { Ok::<_, TestError>(9u8) })
            .await
    };
    let (leader, waiter) = tokio::join!(leader, waiter);
    assert_eq!(leader, Err(TestError::Source("leader failed")));
    assert_eq!(
        waiter,
        Err(TestError::Cache(
            "the load this call waited on failed: leader failed".into()
        )),
        "the waiter got the leader's failure and did not run its own loader"
    );
    let loads = cache.stats().loads;
    assert_eq!((loads.loader_runs, loads.shared_failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_over_to_a_waiter() {
    let (cache, _) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let loader = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(SECOND).await;
        Ok::<_, TestError>(3u8)
    };
    let leader = cache.get_or_load("k", Tier::L1, None, loader);
    let waiter = async {
        tokio::task::yield_now().await;
        cache.get_or_load("k", Tier::L1, None, loader).await
    };
    // The leader is dropped half-way through its loader.
    let leader_cancelled = tokio::time::timeout(SECOND / 2, leader);
    let (cancelled, waited) = tokio::join!(leader_cancelled, waiter);
    assert!(cancelled.is_err(), "the leader timed out");
    assert_eq!(waited, Ok(Arc::new(3)));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the waiter took over the load"
    );
    assert_eq!(cache.stats().loads.in_flight, 0);
}

#[test]
fn concurrent_synchronous_misses_run_the_loader_once() {
    let (cache, _) = mocked(&config());
    let runs = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    cache.get_or_load_local("cold", Tier::L2, None, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        until_waiting(&cache, "cold", 7);
                        Ok::<_, TestError>(42u64)
                    })
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().expect("no panic"), Ok(Arc::new(42)));
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let loads = cache.stats().loads;
    assert_eq!((loads.loader_runs, loads.coalesced), (1, 7));
    assert_eq!(loads.in_flight, 0);
}

#[test]
fn a_panicking_synchronous_leader_hands_over_to_a_waiter() {
    let (cache, _) = mocked(&config());
    let leading = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let leader = scope.spawn(|| {
            cache.get_or_load_l1_local("k", None, || -> Result<u8, TestError> {
                leading.wait();
                until_waiting(&cache, "k", 1);
                panic!("loader failed")
            })
        });
        leading.wait();
        let waited = cache.get_or_load_l1_local("k", None, || Ok::<_, TestError>(5u8));
        assert_eq!(waited, Ok(Arc::new(5)), "waited, then loaded for itself");
        assert!(leader.join().is_err(), "the leader panicked");
    });
    assert_eq!(cache.stats().loads.in_flight, 0);
}

/// On a current-thread runtime, blocking on an async leader would stop the leader itself.
#[tokio::test]
async fn a_synchronous_caller_does_not_wait_for_an_async_leader() {
    let (cache, _) = mocked(&config());
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let leader = cache.get_or_load("k", Tier::L1, None, || async {
        let _ = released.await;
        Ok::<_, TestError>(1u8)
    });
    let blocking_caller = async {
        tokio::task::yield_now().await;
        let own = cache.get_or_load_local("k", Tier::L1, None, || Ok::<_, TestError>(2u8));
        let _ = release.send(());
        own
    };
    let (led, own) = tokio::join!(leader, blocking_caller);
    assert_eq!(own, Ok(Arc::new(2)), "ran its own loader at once");
    assert_eq!(led, Ok(Arc::new(1)));
}

// ----- remote tier -----

/// A value and its expiry (in real time, as Redis keeps it), if any.
pub(super) type Stored = (Vec<u8>, Option<std::time::Instant>);

/// An in-memory stand-in for Redis.
#[derive(Default)]
pub(super) struct MemoryRemote {
    pub(super) map: Mutex<HashMap<String, Stored>>,
    pub(super) down: std::sync::atomic::AtomicBool,
    /// Claims to replay failed changes, as the Redis tier does.
    replays: std::sync::atomic::AtomicBool,
    batch_reads: AtomicUsize,
    sink: Mutex<Option<InvalidationSink>>,
    /// Runs inside `get`, after the value was read: widens the window of a race.
    #[allow(clippy::type_complexity)]
    pub(super) during_get: Mutex<Option<Box<dyn Fn(&str) + Send + Sync>>>,
}

impl std::fmt::Debug for MemoryRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryRemote")
    }
}

impl MemoryRemote {
    /// Stores `bytes` at `key` for good, as another program could.
    pub(super) fn put(&self, key: &str, bytes: Vec<u8>) {
        self.map.lock().insert(key.to_owned(), (bytes, None));
    }

    fn check(&self) -> Result<(), RemoteError> {
        if self.down.load(Ordering::SeqCst) {
            Err("connection refused".into())
        } else {
            Ok(())
        }
    }
}

use crate::error::RemoteError;

impl RemoteTier for MemoryRemote {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            self.check()?;
            let value = live(&self.map.lock(), key);
            if let Some(hook) = &*self.during_get.lock() {
                hook(key);
            }
            Ok(value)
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.check()?;
            let expiry = std::time::Instant::now().checked_add(ttl);
            self.map
                .lock()
                .insert(key.to_owned(), (value.to_vec(), expiry));
            Ok(())
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.check()?;
            self.map.lock().remove(key);
            Ok(())
        })
    }
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            self.check()?;
            let mut map = self.map.lock();
            let before = map.len();
            map.retain(|k, _| !k.starts_with(prefix));
            Ok((before - map.len()) as u64)
        })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            self.check()?;
            self.map.lock().clear();
            Ok(())
        })
    }
    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, RemoteError>> {
        Box::pin(async move {
            self.check()?;
            self.batch_reads.fetch_add(1, Ordering::SeqCst);
            let map = self.map.lock();
            Ok(keys.iter().map(|k| live(&map, k)).collect())
        })
    }
    fn replays_failed_changes(&self) -> bool {
        self.replays.load(Ordering::SeqCst)
    }
    fn subscribe(&self, sink: InvalidationSink) {
        // Listening from now on: as every tier, it says so with a resync.
        sink(Invalidation::Resync);
        *self.sink.lock() = Some(sink);
    }
}

/// The value at `key` unless it expired.
fn live(
    map: &HashMap<String, (Vec<u8>, Option<std::time::Instant>)>,
    key: &str,
) -> Option<Vec<u8>> {
    let (value, expiry) = map.get(key)?;
    let expired = expiry.is_some_and(|at| at <= std::time::Instant::now());
    (!expired).then(|| value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_remote_tier_conforms() {
    crate::conformance::run(async |_namespace: &str| {
        Arc::new(MemoryRemote::default()) as Arc<dyn RemoteTier>
    })
    .await;
}

fn with_remote() -> (MultiLevelCache, Arc<MemoryRemote>) {
    let remote = Arc::new(MemoryRemote::default());
    let cache = MultiLevelCache::builder(&config())
        .remote_tier(Arc::clone(&remote) as Arc<dyn RemoteTier>)
        .build()
        .expect("valid");
    (cache, remote)
}

#[tokio::test]
async fn invalidating_a_tag_drops_the_entries_under_it_and_no_others() {
    let cache = MultiLevelCache::builder(&config()).build().expect("valid");
    let tags = ["ads", "campaign:3"];
    let key = cache.tagged_key("ad:7", &tags).await;
    assert_eq!(
        key,
        cache.tagged_key("ad:7", &tags).await,
        "stable until invalidated"
    );
    let other = cache.tagged_key("ad:8", &["ads", "campaign:4"]).await;
    cache.set(&key, 7u32, Tier::L2, None).await.expect("stored");
    cache
        .set(&other, 8u32, Tier::L2, None)
        .await
        .expect("stored");

    cache
        .invalidate_tag("campaign:3")
        .await
        .expect("invalidated");
    let key = cache.tagged_key("ad:7", &tags).await;
    assert_eq!(cache.get::<u32>(&key, Tier::L2).await.expect("ok"), None);
    let other = cache.tagged_key("ad:8", &["ads", "campaign:4"]).await;
    assert_eq!(
        cache.get::<u32>(&other, Tier::L2).await.expect("ok"),
        Some(Arc::new(8)),
        "another campaign's entry stays"
    );

    cache.invalidate_tag("ads").await.expect("invalidated");
    let other = cache.tagged_key("ad:8", &["ads", "campaign:4"]).await;
    assert_eq!(cache.get::<u32>(&other, Tier::L2).await.expect("ok"), None);

    let long = "t".repeat(200);
    assert!(matches!(
        cache.invalidate_tag(&long).await,
        Err(Error::KeyTooLong { .. })
    ));
}

/// A reader that misses L1 and finds L2 while an invalidation drops both copies must not put
/// the L2 value back into L1. A reader thread spins on the key while the test invalidates it,
/// round after round; each round checks L1 once the reader has finished a read begun after
/// the invalidation (so any read that raced it has ended).
#[test]
fn a_promotion_from_l2_that_races_an_invalidation_keeps_no_stale_copy() {
    let cache = MultiLevelCache::builder(&config()).build().expect("valid");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let stale_round = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let _ = cache.get_local::<u32>("k", Tier::L2);
                reads.fetch_add(1, Ordering::AcqRel);
            }
        });
        let stale_round = (0..2000u32).find(|&round| {
            cache.set_local("k", round, Tier::L2, None).expect("stored");
            cache
                .engine
                .apply_invalidation(&Invalidation::Keys(vec!["k".into()]));
            let after = reads.load(Ordering::Acquire);
            while reads.load(Ordering::Acquire) < after + 2 {
                std::hint::spin_loop();
            }
            let left = cache
                .engine
                .l1
                .get::<u32>("k", &cache.engine.clock, &cache.engine.counters);
            !matches!(left, entry::Lookup::Miss)
        });
        stop.store(true, Ordering::Release);
        stale_round
    });
    assert_eq!(stale_round, None, "L1 kept a copy the invalidation dropped");
}

#[tokio::test]
async fn a_read_that_races_an_invalidation_keeps_no_stale_copy() {
    let (cache, remote) = with_remote();
    cache
        .set("ad", "old".to_string(), Tier::Redis, None)
        .await
        .expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    cache.clear(Tier::L2).await.expect("cleared");
    // While this instance's GET is in flight, another instance writes a new value and its
    // invalidation arrives here.
    let bytes = cache
        .engine
        .codec
        .encode(
            &"new".to_string(),
            codec::UnixTimes::after(SECOND * 60, SECOND * 60, SECOND * 60),
            "ad",
            codec::Seal::Default,
        )
        .expect("encodes");
    let sink = remote.sink.lock().clone().expect("subscribed");
    let map = Arc::clone(&remote);
    *remote.during_get.lock() = Some(Box::new(move |key| {
        map.put(key, bytes.clone());
        sink(Invalidation::Keys(vec![key.to_owned()]));
    }));
    let raced = cache.get::<String>("ad", Tier::Redis).await.expect("ok");
    assert_eq!(
        raced.as_deref().map(String::as_str),
        Some("old"),
        "what the GET read"
    );
    *remote.during_get.lock() = None;
    assert_eq!(
        cache.get_local::<String>("ad", Tier::L2).expect("ok"),
        None,
        "no local copy of the value the invalidation replaced"
    );
    assert_eq!(
        cache
            .get::<String>("ad", Tier::Redis)
            .await
            .expect("ok")
            .as_deref()
            .map(String::as_str),
        Some("new")
    );
    assert_eq!(cache.stats().remote.expect("remote").raced_invalidations, 1);
}

#[tokio::test]
async fn a_remote_that_replays_takes_failed_removals_as_done_and_failed_writes_as_queued() {
    let (cache, remote) = with_remote();
    remote.replays.store(true, Ordering::SeqCst);
    cache.set("k", 1u8, Tier::Redis, None).await.expect("up");
    remote.down.store(true, Ordering::SeqCst);

    assert!(
        matches!(cache.delete("k").await, Ok(true)),
        "queued by the tier: done"
    );
    assert!(
        matches!(cache.get_local::<u8>("k", Tier::L2), Ok(None)),
        "no local copy"
    );
    assert!(matches!(cache.invalidate_prefix("p:").await, Ok(0)));
    let err = cache
        .set("k", 2u8, Tier::Redis, None)
        .await
        .expect_err("the shared write failed");
    assert!(matches!(err, Error::RemoteQueued(_)), "{err:?}");
    assert_eq!(
        cache.get_local::<u8>("k", Tier::L2).expect("a valid key"),
        Some(Arc::new(2))
    );
    let errors = cache.stats().remote.expect("configured").errors;
    assert_eq!(errors, 3, "every failure is still counted");

    remote.replays.store(false, Ordering::SeqCst);
    assert!(matches!(cache.delete("k").await, Err(Error::Remote(_))));
}

#[tokio::test]
async fn clearing_the_remote_tier_drops_this_instances_shared_copies_only() {
    let (cache, _remote) = with_remote();
    cache
        .set("shared", 1u8, Tier::Redis, None)
        .await
        .expect("up");
    cache
        .set("local", 2u8, Tier::L2, None)
        .await
        .expect("local");
    cache.clear(Tier::Redis).await.expect("cleared");
    assert_eq!(
        cache.get_local::<u8>("shared", Tier::L2).expect("valid"),
        None
    );
    assert_eq!(
        cache.get_local::<u8>("local", Tier::L2).expect("valid"),
        Some(Arc::new(2)),
        "a value that never went to the shared tier stays"
    );
}

#[tokio::test]
async fn a_failing_remote_is_a_miss_for_readers_and_an_error_for_writers() {
    let (cache, remote) = with_remote();
    remote.down.store(true, Ordering::SeqCst);
    assert_eq!(
        cache
            .get::<u8>("k", Tier::Redis)
            .await
            .expect("a miss, not an error"),
        None
    );
    let err = cache
        .set("k", 1u8, Tier::Redis, None)
        .await
        .expect_err("write failed");
    assert!(matches!(err, Error::Remote(_)));
    assert_eq!(
        cache.get::<u8>("k", Tier::L2).await.expect("ok"),
        Some(Arc::new(1)),
        "local tiers hold it"
    );
    let loaded = cache
        .get_or_load("k2", Tier::Redis, None, || async {
            Ok::<_, TestError>(2u8)
        })
        .await;
    assert_eq!(
        loaded,
        Ok(Arc::new(2)),
        "get_or_load callers never see the remote failure"
    );
    // The get, the set, and get_or_load's read and write.
    assert_eq!(cache.stats().remote.expect("remote").errors, 4);
}

#[tokio::test]
async fn get_many_reads_every_tier_and_batches_the_remote_misses() {
    let (cache, remote) = with_remote();
    cache.set("a", 1u32, Tier::L1, None).await.expect("stored");
    cache.set("b", 2u32, Tier::L2, None).await.expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    cache
        .set("c", 3u32, Tier::Redis, None)
        .await
        .expect("stored");
    cache
        .set("d", 4u32, Tier::Redis, None)
        .await
        .expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    cache.clear(Tier::L2).await.expect("cleared");
    // b lives in L2 only, and L2 was just cleared: write it again.
    cache.set("b", 2u32, Tier::L2, None).await.expect("stored");
    cache.set("a", 1u32, Tier::L1, None).await.expect("stored");

    let got = cache
        .get_many::<u32>(&["a", "b", "c", "none", "d"], Tier::Redis)
        .await
        .expect("ok");
    let got: Vec<Option<u32>> = got.into_iter().map(|v| v.map(|v| *v)).collect();
    assert_eq!(got, [Some(1), Some(2), Some(3), None, Some(4)]);
    assert_eq!(
        remote.batch_reads.load(Ordering::SeqCst),
        1,
        "one round trip for c, none, d"
    );
    let stats = cache.stats();
    assert_eq!(stats.remote.expect("remote").hits, 2);
    assert_eq!(
        cache.get::<u32>("c", Tier::L1).await.expect("ok"),
        Some(Arc::new(3)),
        "remote hits are promoted"
    );
    let err = cache
        .get_many::<u32>(&["ok", &"k".repeat(200)], Tier::L2)
        .await;
    assert!(matches!(err, Err(Error::KeyTooLong { .. })));
}

#[tokio::test]
async fn invalidations_from_other_instances_drop_local_copies() {
    let (cache, remote) = with_remote();
    let sink = remote.sink.lock().clone().expect("the cache subscribed");
    for key in ["user:1", "user:2", "ad:1"] {
        cache
            .set(key, 1u8, Tier::Redis, None)
            .await
            .expect("stored");
    }
    cache
        .set("local", 1u8, Tier::L2, None)
        .await
        .expect("stored");
    let local_entries = |cache: &MultiLevelCache| cache.stats().l1.entries.unwrap_or(0);

    sink(Invalidation::Keys(vec!["ad:1".into()]));
    assert_eq!(local_entries(&cache), 3);
    assert_eq!(
        cache.get::<u8>("ad:1", Tier::L2).await.expect("ok"),
        None,
        "L1 and L2 dropped it"
    );

    sink(Invalidation::Prefix("user:".into()));
    assert_eq!(local_entries(&cache), 1);

    cache
        .set("shared", 1u8, Tier::Redis, None)
        .await
        .expect("stored");
    sink(Invalidation::Resync);
    assert_eq!(
        cache.get::<u8>("local", Tier::L1).await.expect("ok"),
        Some(Arc::new(1)),
        "values that never went to the remote tier stay"
    );
    assert_eq!(cache.get::<u8>("shared", Tier::L2).await.expect("ok"), None);
    assert_eq!(cache.stats().l2.entries, Some(1));
}

#[tokio::test]
async fn redis_tier_without_a_remote_is_stored_locally() {
    let (cache, _) = mocked(&config());
    cache
        .set("k", 1u8, Tier::Redis, None)
        .await
        .expect("stored");
    assert_eq!(cache.stats().l2.entries, Some(1));
    assert_eq!(cache.stats().remote, None);
}

// ----- metrics -----

#[test]
fn hits_misses_and_size_are_published_with_their_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (cache, _) = mocked(&config());
    block_on(async {
        cache.set("k", 1u8, Tier::L2, None).await.expect("stored");
        cache.get::<u8>("k", Tier::L2).await.expect("ok");
        cache.get::<u8>("k", Tier::L2).await.expect("ok");
        cache.get::<u8>("none", Tier::L2).await.expect("ok");
        let _ = cache
            .get_or_load("loaded", Tier::L1, None, || async {
                Ok::<_, TestError>(1u8)
            })
            .await;
        let _ = cache
            .get_or_load("failed", Tier::L1, None, || async {
                Err::<u8, _>(TestError::Source("down"))
            })
            .await;
    });
    metrics::with_local_recorder(&recorder, || cache.publish_metrics());
    block_on(async { cache.get::<u8>("k", Tier::L1).await.expect("ok") });
    metrics::with_local_recorder(&recorder, || cache.publish_metrics());

    let mut seen = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        seen.insert(
            format!("{}{{{}}}", key.key().name(), labels.join(",")),
            value,
        );
    }
    let counter = |name: &str| match seen.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        counter("cache_hits_total{tier=l1,operation=get}"),
        3,
        "deltas add up across publishes"
    );
    assert_eq!(counter("cache_misses_total{tier=l1,operation=get}"), 1);
    assert_eq!(counter("cache_misses_total{tier=l2,operation=get}"), 1);
    assert_eq!(
        counter("cache_misses_total{tier=l1,operation=get_or_load}"),
        2
    );
    assert!(
        !seen.contains_key("cache_hits_total{tier=l2,operation=get}"),
        "no L2 hits happened"
    );
    assert_eq!(counter("cache_load_events_total{event=loader_run}"), 2);
    assert_eq!(counter("cache_load_events_total{event=loader_error}"), 1);
    assert!(
        !seen.contains_key("cache_load_events_total{event=stale_served}"),
        "nothing stale was served"
    );
    match seen.get("cache_size_bytes{tier=l2}") {
        Some(DebugValue::Gauge(bytes)) => assert!(bytes.into_inner() > 64.0),
        other => panic!("cache_size_bytes: {other:?}"),
    }
}

// ----- properties -----

#[derive(Debug, Clone)]
enum Step {
    Set { key: u8, tier: Tier, ttl_ms: u64 },
    Get { key: u8, tier: Tier },
    Advance { ms: u64 },
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    let tier = prop_oneof![Just(Tier::L1), Just(Tier::L2)];
    prop_oneof![
        (0u8..8, tier.clone(), 1u64..2000).prop_map(|(key, tier, ttl_ms)| Step::Set {
            key,
            tier,
            ttl_ms
        }),
        (0u8..8, tier).prop_map(|(key, tier)| Step::Get { key, tier }),
        (0u64..1500).prop_map(|ms| Step::Advance { ms }),
        Just(Step::Sweep),
    ]
}

proptest! {
    /// Against a model of what was written when: a read never returns a value past its TTL,
    /// and what it returns is the latest write.
    #[test]
    fn an_entry_is_never_served_past_its_ttl(steps in proptest::collection::vec(step(), 1..80)) {
        let (cache, mock) = mocked(&config());
        let rt = runtime();
        let mut now_ms = 0u64;
        // key -> (value, expiry in ms, deepest tier)
        let mut model: HashMap<u8, (u64, u64, Tier)> = HashMap::new();
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Set { key, tier, ttl_ms } => {
                    let value = i as u64;
                    rt.block_on(cache.set(&key.to_string(), value, tier, Some(Duration::from_millis(ttl_ms)))).expect("stored");
                    model.insert(key, (value, now_ms + ttl_ms, tier));
                }
                Step::Get { key, tier } => {
                    let got = rt.block_on(cache.get::<u64>(&key.to_string(), tier)).expect("ok");
                    match model.get(&key) {
                        Some(&(value, expiry, _)) if now_ms < expiry => {
                            // Capacity is ample here, so a live entry is always found.
                            prop_assert_eq!(got, Some(Arc::new(value)), "live entry at {} ms", now_ms);
                        }
                        _ => prop_assert_eq!(got, None, "expired or never written, at {} ms", now_ms),
                    }
                }
                Step::Advance { ms } => {
                    mock.increment(Duration::from_millis(ms));
                    now_ms += ms;
                }
                Step::Sweep => { cache.sweep_expired(); }
            }
        }
    }

    /// L2 never holds more bytes than its budget, whatever sizes arrive, including values
    /// heavier than one shard's share (refused and counted).
    #[test]
    fn l2_never_exceeds_its_byte_budget(sizes in proptest::collection::vec(0usize..100_000, 1..120)) {
        let config = PerformanceConfig {
            cache: CacheConfig {
                l2_max_bytes: 128 * 1024,
                max_value_bytes: 40_000,
                ..config().cache
            },
            ..config()
        };
        let (cache, _) = mocked(&config);
        let budget = cache.l2_capacity_bytes();
        prop_assert_eq!(budget, 128 * 1024);
        let l2 = &cache.engine.l2;
        let shard_capacity = l2.shard_capacity();
        prop_assert!(shard_capacity < 100_000, "some sizes exceed a shard's share");
        let stamp = cache.engine.plan_write("k", Some(60 * SECOND)).expect("valid").stamp;
        let (mut refused, mut too_heavy) = (0, 0);
        for (i, size) in sizes.into_iter().enumerate() {
            let key = format!("key-{i}");
            if l2::entry_weight(key.len(), size) > shard_capacity {
                too_heavy += 1;
            }
            let entry = entry::L2Entry { bytes: vec![7u8; size].into(), stamp };
            if l2.insert(&key, entry).is_err() {
                refused += 1;
            }
            prop_assert!(l2.bytes() <= budget, "{} > {}", l2.bytes(), budget);
        }
        prop_assert_eq!(refused, too_heavy, "exactly the entries heavier than a shard are refused");
        // And through the public API, values are encoded and weighed the same way.
        let rt = runtime();
        for i in 0..20u64 {
            let noise: Vec<u64> = (0..(i * 300)).map(|j| j.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i).collect();
            let _ = rt.block_on(cache.set(&format!("v{i}"), noise, Tier::L2, None));
            prop_assert!(l2.bytes() <= budget);
        }
        // Values over max_value_bytes are refused by the encoder; every value under it fits a
        // shard, so L2 itself never had to refuse one.
        prop_assert_eq!(cache.stats().l2.refused, 0);
    }
}

#[test]
fn a_get_future_stays_small() {
    let (cache, _) = mocked(&config());
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Big {
        fields: [[u64; 32]; 16],
    }
    let future = cache.get::<Big>("k", Tier::Redis);
    // The remote path is boxed, so the value type's size does not reach the future.
    assert!(size_of_val(&future) < 512, "{} bytes", size_of_val(&future));
}

#[test]
fn local_reads_and_writes_for_synchronous_code() {
    let (cache, _) = with_remote();
    cache
        .set_local("k", 5u32, Tier::Redis, None)
        .expect("stored");
    assert_eq!(
        cache.stats().l2.entries,
        Some(1),
        "Redis tier stops at L2 here"
    );
    cache.engine.l1.clear();
    assert_eq!(
        cache.get_local::<u32>("k", Tier::L2).expect("ok"),
        Some(Arc::new(5))
    );
    assert_eq!(cache.stats().l2.hits, 1);
    cache.set_local("l1", 1u8, Tier::L1, None).expect("stored");
    assert_eq!(
        cache.get_local::<u8>("l1", Tier::L1).expect("ok"),
        Some(Arc::new(1))
    );
    assert!(
        cache
            .set_local("z", 1u8, Tier::L1, Some(Duration::ZERO))
            .is_err()
    );
}
