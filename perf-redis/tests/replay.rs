//! Changes made while Redis does not answer reach Redis and the other instances once it does,
//! and reads racing writes keep no stale copy: against a real Redis server.

#![allow(clippy::print_stdout)] // a test says what it measured

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use deadpool_redis::redis::AsyncCommands;
use perf_core::{Error, PerformanceConfig, RemoteTier, Tier, query::QueryOptimizer};
use perf_redis::{BreakerState, RedisTier};
use support::{RedisServer, cache_over as cache, local, within};

/// A tier that gives up on a frozen Redis quickly: 100 ms per call, open after one failure,
/// a probe every 200 ms.
async fn impatient_tier(server: &RedisServer, namespace: &str) -> Arc<RedisTier> {
    RedisTier::builder(server.url())
        .namespace(namespace)
        .op_timeout(Duration::from_millis(100))
        .circuit_breaker(1, Duration::from_millis(200))
        .build()
        .await
        .expect("tier builds")
}

async fn both_subscribed(a: &RedisTier, b: &RedisTier) {
    let subscribed = within(Duration::from_secs(5), async || {
        a.stats().backplane.subscribed && b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");
}

async fn in_redis(server: &RedisServer, key: &str) -> bool {
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    conn.exists(key).await.expect("EXISTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_redis_is_frozen_reach_redis_and_the_other_instance_when_it_thaws() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (tier_a, tier_b) = (
        impatient_tier(&server, "thaw").await,
        impatient_tier(&server, "thaw").await,
    );
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    both_subscribed(&tier_a, &tier_b).await;
    // One write at a time, each heard before the next: A batches the announcements of writes
    // made together, so no count of B's messages says it has heard them all, and one heard
    // after B read its key would drop B's copy.
    for (heard_before, key) in (0u64..).zip(["gone", "user:1", "written"]) {
        a.set(key, 1u32, Tier::Redis, None).await.expect("stored");
        let heard = within(Duration::from_secs(1), async || {
            tier_b.stats().backplane.messages_received > heard_before
        })
        .await;
        assert!(heard.is_some(), "B heard A's write of {key} before reading");
    }
    for key in ["gone", "user:1", "written"] {
        assert_eq!(
            b.get::<u32>(key, Tier::Redis).await.expect("ok").as_deref(),
            Some(&1)
        );
        assert_eq!(local(&b, key).await, Some(1), "B holds a copy of {key}");
    }

    // Frozen, Redis keeps every connection open: B's subscription does not drop, so only
    // A's replay can tell B.
    server.freeze();
    assert!(matches!(a.delete("gone").await, Ok(true)), "queued: done");
    assert!(a.invalidate_prefix("user:").await.is_ok(), "queued: done");
    let write = a.set("written", 2u32, Tier::Redis, None).await;
    assert!(matches!(write, Err(Error::RemoteQueued(_))), "{write:?}");
    assert_eq!(
        local(&a, "gone").await,
        None,
        "A holds no copy of what it removed"
    );
    assert_eq!(local(&a, "written").await, Some(2), "A reads its own write");
    let stats = tier_a.stats();
    assert_eq!(stats.pending_changes, 3, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Open);
    assert_eq!(local(&b, "gone").await, Some(1), "B has not been told yet");

    server.thaw();
    let replayed = within(Duration::from_secs(2), async || {
        tier_a.stats().pending_changes == 0
    })
    .await;
    assert!(
        replayed.is_some(),
        "replayed within 2 s: {:?}",
        tier_a.stats()
    );
    assert!(tier_a.stats().replays >= 1);
    for key in ["thaw:gone", "thaw:user:1", "thaw:written"] {
        assert!(!in_redis(&server, key).await, "{key} removed from Redis");
    }
    let told = within(Duration::from_secs(2), async || {
        local(&b, "gone").await.is_none()
            && local(&b, "user:1").await.is_none()
            && local(&b, "written").await.is_none()
    })
    .await;
    assert!(
        told.is_some(),
        "B dropped every copy older than A's changes"
    );
    assert_eq!(
        b.get::<u32>("written", Tier::Redis).await.expect("ok"),
        None,
        "a write that did not reach Redis becomes a removal: no instance serves the old value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_invalidated_while_redis_is_frozen_is_ok_and_reaches_every_instance_after() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (tier_a, tier_b) = (
        impatient_tier(&server, "tables").await,
        impatient_tier(&server, "tables").await,
    );
    let config = PerformanceConfig::default();
    let query_a = QueryOptimizer::new(&config, cache(&tier_a));
    let query_b = QueryOptimizer::new(&config, cache(&tier_b));
    both_subscribed(&tier_a, &tier_b).await;
    let loads = AtomicUsize::new(0);
    let read = async |query: &QueryOptimizer| {
        query
            .cached_query("SELECT count(*) FROM impressions", &(), None, || async {
                Ok::<_, String>(loads.fetch_add(1, Ordering::SeqCst))
            })
            .await
            .map(|rows| *rows)
    };
    assert_eq!(read(&query_a).await, Ok(0));
    assert_eq!(read(&query_b).await, Ok(0), "B shares A's result");

    server.freeze();
    query_a
        .invalidate_table("impressions")
        .await
        .expect("a committed write's invalidation is not an error during an outage");
    assert_eq!(
        read(&query_a).await,
        Ok(1),
        "A reads past its own invalidation at once"
    );
    server.thaw();

    let reached = within(Duration::from_secs(2), async || {
        read(&query_b).await != Ok(0)
    })
    .await;
    assert!(
        reached.is_some(),
        "B stopped serving the result from before the write"
    );
}

/// One writer and one reader on the same key, many rounds: once the reader has heard every
/// announcement of a round's writes, it holds no copy older than the last, whatever its reads
/// raced. The round ends with a fence: the reader writes a key of its own, the writer deletes
/// it after its last write, and the announcements arrive in order, so the reader's copy of
/// the fence going means it has applied everything before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_writes_keep_no_stale_copy_once_the_last_write_is_heard() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let builder = |namespace: &str| {
        RedisTier::builder(server.url())
            .namespace(namespace)
            .op_timeout(Duration::from_secs(2))
    };
    let tier_a = builder("race").build().await.expect("builds");
    let tier_b = builder("race").build().await.expect("builds");
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    both_subscribed(&tier_a, &tier_b).await;

    for round in 0..24u32 {
        let fence = format!("fence:{round}");
        b.set(&fence, round, Tier::Redis, None)
            .await
            .expect("stored");
        let writing = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn({
            let (b, writing) = (b.clone(), Arc::clone(&writing));
            async move {
                let mut reads = 0u64;
                while writing.load(Ordering::Acquire) {
                    b.get::<u32>("hot", Tier::Redis).await.expect("ok");
                    reads += 1;
                    // A local hit never waits: let the writer's task have the thread too.
                    tokio::task::yield_now().await;
                }
                reads
            }
        });
        let writer = async {
            for i in 0..20 {
                a.set("hot", round * 100 + i, Tier::Redis, None)
                    .await
                    .expect("stored");
                tokio::task::yield_now().await;
            }
            a.delete(&fence).await.expect("deleted");
            writing.store(false, Ordering::Release);
        };
        writer.await;
        let reads = reader.await.expect("the reader ran");
        let last = round * 100 + 19;
        let heard = within(Duration::from_secs(2), async || {
            local(&b, &fence).await.is_none()
        })
        .await;
        let (sa, sb) = (tier_a.stats().backplane, tier_b.stats().backplane);
        assert!(
            heard.is_some(),
            "round {round}: A sent {sa:?}, B received {sb:?}"
        );
        assert_eq!(sa.send_errors, 0, "round {round}: {sa:?}");
        let held = local(&b, "hot").await;
        assert!(
            held.is_none_or(|value| value == last),
            "round {round}: after {reads} racing reads B holds {held:?}, the last write was {last}"
        );
        assert_eq!(
            b.get::<u32>("hot", Tier::Redis)
                .await
                .expect("ok")
                .as_deref(),
            Some(&last)
        );
    }
    let raced = b.stats().remote.expect("configured").raced_invalidations;
    println!("reads that raced an invalidation and gave their copy back: {raced}");
}

/// A removal whose caller gave up mid-call (its future dropped while Redis is frozen) may or
/// may not have run: it waits for the replay like a failed one, and is applied on thaw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_dropped_mid_call_is_replayed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier = impatient_tier(&server, "dropped").await;
    tier.set("k", b"v", Duration::from_secs(60))
        .await
        .expect("stored");
    server.freeze();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), tier.delete("k")).await;
    assert!(gave_up.is_err(), "the caller dropped the delete mid-call");
    assert_eq!(tier.stats().pending_changes, 1, "{:?}", tier.stats());
    assert_eq!(
        tier.get("k").await.expect("a miss"),
        None,
        "hidden until replayed"
    );
    server.thaw();
    let replayed = within(Duration::from_secs(2), async || {
        tier.stats().pending_changes == 0
    })
    .await;
    assert!(replayed.is_some(), "{:?}", tier.stats());
    assert!(!in_redis(&server, "dropped:k").await, "removed from Redis");
}
