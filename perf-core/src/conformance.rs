//! The contract of [`RemoteTier`], as one suite that every implementation runs: perf-core's
//! tests run it on an in-memory tier, perf-redis's on a Redis server and on a Redis Cluster.
//! Test support, not an API: behind the `conformance` feature, and free to change.
//!
//! [`run`] runs every check, each on fresh tiers from the caller's factory, which makes a tier
//! in the namespace it is given (tiers in different namespaces share no keys). It waits for
//! TTLs in real time: run it on a runtime whose time is not paused.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use crate::{
    MultiLevelCache, PerformanceConfig, RemoteError, RemoteTier, Tier,
    cache::{BoxFuture, InvalidationSink},
};

/// A long enough TTL that no check sees it pass.
const LONG: Duration = Duration::from_secs(600);

/// How long a tier that keeps the invalidation sink may take to start listening.
const LISTENING: Duration = Duration::from_secs(30);

/// Runs every check of the contract on tiers from `tier`.
pub async fn run(tier: impl AsyncFn(&str) -> Arc<dyn RemoteTier>) {
    check("reads_what_was_written", reads_what_was_written(&tier)).await;
    check(
        "values_expire_after_their_ttl",
        values_expire_after_their_ttl(&tier),
    )
    .await;
    check(
        "get_many_keeps_the_asked_order_with_misses_in_place",
        get_many_keeps_the_asked_order_with_misses_in_place(&tier),
    )
    .await;
    check(
        "invalidate_prefix_removes_that_literal_prefix_only",
        invalidate_prefix_removes_that_literal_prefix_only(&tier),
    )
    .await;
    check(
        "clear_removes_this_namespace_only",
        clear_removes_this_namespace_only(&tier),
    )
    .await;
    check(
        "a_cache_round_trips_through_the_tier",
        a_cache_round_trips_through_the_tier(&tier),
    )
    .await;
    check(
        "undecodable_bytes_are_a_counted_miss_and_deleted",
        undecodable_bytes_are_a_counted_miss_and_deleted(&tier),
    )
    .await;
    check(
        "a_value_of_another_type_is_a_miss_and_left_alone",
        a_value_of_another_type_is_a_miss_and_left_alone(&tier),
    )
    .await;
    check(
        "used_bytes_counts_what_the_tier_holds",
        used_bytes_counts_what_the_tier_holds(&tier),
    )
    .await;
}

/// A tier that reports its size (`cache_size_bytes{tier="redis"}`) counts a value written
/// to it; one that cannot tell says so with `None`, every time.
async fn used_bytes_counts_what_the_tier_holds(tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>) {
    const VALUE: usize = 256 * 1024;
    let tier = tier("conformance-size").await;
    let before = tier.used_bytes().await.expect("the tier is up");
    set(&*tier, "big", &vec![7u8; VALUE]).await;
    let after = tier.used_bytes().await.expect("the tier is up");
    match (before, after) {
        // Other keys may expire meanwhile: allow them a little.
        (Some(before), Some(after)) => assert!(
            after >= before + (VALUE as u64) * 3 / 4,
            "{before} bytes, then {after} after writing {VALUE}"
        ),
        (None, None) => {}
        sizes => panic!("the tier reports its size only sometimes: {sizes:?}"),
    }
}

/// Runs one check, naming it if it fails.
async fn check(name: &str, check: impl Future<Output = ()>) {
    struct Named<'a>(&'a str);
    impl Drop for Named<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("remote tier conformance: `{}` failed", self.0);
            }
        }
    }
    let _named = Named(name);
    check.await;
}

async fn get(tier: &dyn RemoteTier, key: &str) -> Option<Vec<u8>> {
    tier.get(key).await.expect("the tier is up")
}

async fn set(tier: &dyn RemoteTier, key: &str, value: &[u8]) {
    tier.set(key, value, LONG).await.expect("the tier is up");
}

async fn set_all(tier: &dyn RemoteTier, prefix: &str, count: u32) {
    for i in 0..count {
        set(tier, &format!("{prefix}{i}"), &i.to_le_bytes()).await;
    }
}

/// How many of `prefix0..prefix{count}` the tier holds.
async fn held(tier: &dyn RemoteTier, prefix: &str, count: u32) -> usize {
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = tier.get_many(&keys).await.expect("the tier is up");
    assert_eq!(values.len(), keys.len(), "one answer a key");
    values.iter().flatten().count()
}

/// A cache over `tier`, once the tier listens for other instances' changes if it does: its
/// first [`Resync`](crate::cache::Invalidation::Resync), sent when it starts listening, would otherwise
/// drop local copies at a moment a check cannot foresee.
async fn cache_over(tier: &Arc<dyn RemoteTier>) -> MultiLevelCache {
    let (heard, mut listening) = tokio::sync::watch::channel(false);
    let tier: Arc<dyn RemoteTier> = Arc::new(Listening {
        inner: Arc::clone(tier),
        heard: Mutex::new(Some(heard)),
    });
    let cache = MultiLevelCache::builder(&PerformanceConfig::default())
        .remote_tier(Arc::clone(&tier))
        .build()
        .expect("valid config");
    // A tier that does not listen dropped the sink, and with it the last sender.
    let first = tokio::time::timeout(LISTENING, listening.wait_for(|heard| *heard)).await;
    match first {
        Ok(Ok(_)) | Ok(Err(_)) => cache,
        Err(_) => panic!(
            "the tier kept the sink but sent no resync within {LISTENING:?} (RemoteTier::subscribe)"
        ),
    }
}

/// Forwards to `inner`, and says through `heard` when the first invalidation arrives.
#[derive(Debug)]
struct Listening {
    inner: Arc<dyn RemoteTier>,
    /// Moved into the sink, so that a tier dropping the sink closes the channel.
    heard: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
}

impl RemoteTier for Listening {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.inner.get(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.inner.set(key, value, ttl)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.inner.delete(key)
    }

    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.inner.invalidate_prefix(prefix)
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        self.inner.clear()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, RemoteError>> {
        self.inner.get_many(keys)
    }

    fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
        self.inner.used_bytes()
    }

    fn replays_failed_changes(&self) -> bool {
        self.inner.replays_failed_changes()
    }

    fn subscribe(&self, sink: InvalidationSink) {
        let Some(heard) = self.heard.lock().take() else {
            return;
        };
        self.inner.subscribe(Arc::new(move |invalidation| {
            heard.send_replace(true);
            sink(invalidation);
        }));
    }
}

/// `set` stores, a second `set` replaces, `delete` removes; a missing key is `None`, and
/// deleting it is no error.
pub async fn reads_what_was_written(tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>) {
    let tier = tier("conformance-rw").await;
    let tier = &*tier;
    assert_eq!(get(tier, "k").await, None, "nothing written yet");
    set(tier, "k", b"one").await;
    assert_eq!(get(tier, "k").await.as_deref(), Some(&b"one"[..]));
    set(tier, "k", b"two").await;
    assert_eq!(get(tier, "k").await.as_deref(), Some(&b"two"[..]));
    set(tier, "empty", b"").await;
    assert_eq!(get(tier, "empty").await.as_deref(), Some(&b""[..]));
    tier.delete("k").await.expect("deleted");
    assert_eq!(get(tier, "k").await, None);
    tier.delete("k")
        .await
        .expect("deleting a missing key is no error");
}

/// A value is held for its TTL, and gone after it.
pub async fn values_expire_after_their_ttl(tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>) {
    let tier = tier("conformance-ttl").await;
    let tier = &*tier;
    set(tier, "long", b"x").await;
    let short = Duration::from_millis(500);
    tier.set("short", b"x", short).await.expect("stored");
    let start = Instant::now();
    assert_eq!(get(tier, "short").await.as_deref(), Some(&b"x"[..]));
    // Polled, not slept for: the tier's clock decides when the value goes.
    while get(tier, "short").await.is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a 500 ms value still held after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= short / 2, "gone before its TTL");
    assert!(get(tier, "long").await.is_some(), "a longer TTL still runs");
}

/// `get_many` answers in the order asked, a miss in place, a key asked twice answered twice.
pub async fn get_many_keeps_the_asked_order_with_misses_in_place(
    tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>,
) {
    let tier = tier("conformance-many").await;
    let tier = &*tier;
    // Every third key is missing.
    for i in (0..100u32).filter(|i| i % 3 != 0) {
        set(tier, &format!("m:{i}"), &i.to_le_bytes()).await;
    }
    // Asked in another order than written: the answer follows the question.
    let keys: Vec<String> = (0..100u32).rev().map(|i| format!("m:{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = tier.get_many(&keys).await.expect("the tier is up");
    let expected: Vec<Option<Vec<u8>>> = (0..100u32)
        .rev()
        .map(|i| (i % 3 != 0).then(|| i.to_le_bytes().to_vec()))
        .collect();
    assert_eq!(got, expected);

    let got = tier
        .get_many(&["m:1", "m:0", "m:1", "m:99"])
        .await
        .expect("the tier is up");
    let one = Some(1u32.to_le_bytes().to_vec());
    assert_eq!(got, [one.clone(), None, one, None]);
    assert!(tier.get_many(&[]).await.expect("the tier is up").is_empty());
}

/// `invalidate_prefix` removes the keys that start with the prefix, counted, and no others;
/// pattern characters in it match only themselves.
pub async fn invalidate_prefix_removes_that_literal_prefix_only(
    tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>,
) {
    let tier = tier("conformance-prefix").await;
    let tier = &*tier;
    // Enough keys that a tier that pages through them takes several pages.
    set_all(tier, "user:", 1200).await;
    set_all(tier, "item:", 300).await;
    set(tier, "u*[x]", b"x").await;

    let removed = tier.invalidate_prefix("user:").await.expect("removed");
    assert_eq!(removed, 1200);
    assert_eq!(held(tier, "user:", 1200).await, 0, "users left");
    assert_eq!(held(tier, "item:", 300).await, 300, "items kept");

    let removed = tier.invalidate_prefix("u*").await.expect("removed");
    assert_eq!(removed, 1, "`u*` is a literal prefix, not a pattern");
    assert_eq!(get(tier, "u*[x]").await, None);
    assert_eq!(held(tier, "item:", 300).await, 300, "items kept");
    assert_eq!(tier.invalidate_prefix("none:").await.expect("ran"), 0);
}

/// `clear` removes every key of its tier, and none of a tier in another namespace.
pub async fn clear_removes_this_namespace_only(tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>) {
    let (ours, theirs) = (
        tier("conformance-clear").await,
        tier("conformance-other").await,
    );
    set_all(&*ours, "k:", 1200).await;
    set_all(&*theirs, "k:", 30).await;
    ours.clear().await.expect("cleared");
    assert_eq!(held(&*ours, "k:", 1200).await, 0, "keys left");
    assert_eq!(
        held(&*theirs, "k:", 30).await,
        30,
        "other namespace untouched"
    );
}

/// A value a cache stores in the tier is read back by a cache whose local tiers lost it, and
/// promoted into them.
pub async fn a_cache_round_trips_through_the_tier(
    tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>,
) {
    let tier = tier("conformance-trip").await;
    let cache = cache_over(&tier).await;
    cache
        .set("ad:1", "banner".to_string(), Tier::Redis, Some(LONG))
        .await
        .expect("stored");
    assert!(get(&*tier, "ad:1").await.is_some(), "in the tier");
    cache.clear(Tier::L1).await.expect("cleared");
    cache.clear(Tier::L2).await.expect("cleared");
    let hit = cache.get::<String>("ad:1", Tier::Redis).await.expect("ok");
    assert_eq!(hit.as_deref().map(String::as_str), Some("banner"));
    let stats = cache.stats();
    let remote = stats.remote.expect("a remote tier");
    assert_eq!((stats.l1.misses, stats.l2.misses, remote.hits), (1, 1, 1));
    assert_eq!(stats.l2.entries, Some(1), "promoted into L2");
    let local = cache.get::<String>("ad:1", Tier::L1).await.expect("ok");
    assert_eq!(local.as_deref().map(String::as_str), Some("banner"));
}

/// Bytes that do not decode are a miss, counted, and removed from the tier.
pub async fn undecodable_bytes_are_a_counted_miss_and_deleted(
    tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>,
) {
    let tier = tier("conformance-junk").await;
    let cache = cache_over(&tier).await;
    set(&*tier, "foreign", b"written by another program").await;
    let read = cache.get::<String>("foreign", Tier::Redis).await;
    assert_eq!(read.expect("a miss, not an error"), None);
    assert_eq!(cache.stats().remote.expect("remote").decode_errors, 1);
    assert_eq!(get(&*tier, "foreign").await, None, "deleted");
}

/// A value of another type is a miss, counted, and left for whoever owns it.
pub async fn a_value_of_another_type_is_a_miss_and_left_alone(
    tier: &impl AsyncFn(&str) -> Arc<dyn RemoteTier>,
) {
    let tier = tier("conformance-type").await;
    let cache = cache_over(&tier).await;
    let value = vec!["a".to_string()];
    cache
        .set("shared", value.clone(), Tier::Redis, None)
        .await
        .expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    cache.clear(Tier::L2).await.expect("cleared");
    let read = cache.get::<u64>("shared", Tier::Redis).await;
    assert_eq!(read.expect("a miss, not an error"), None);
    let remote = cache.stats().remote.expect("remote");
    assert_eq!((remote.type_mismatches, remote.decode_errors), (1, 0));
    assert!(
        get(&*tier, "shared").await.is_some(),
        "another version's value stays for its owner"
    );
    let read = cache.get::<Vec<String>>("shared", Tier::Redis).await;
    assert_eq!(read.expect("ok").as_deref(), Some(&value));
}
