//! Server-assisted invalidation against a real Redis server: writes made outside perf drop
//! instances' local copies, and a killed tracking connection comes back with a resync.

#![allow(clippy::print_stdout)] // a test says what it measured

mod support;

use std::{sync::Arc, time::Duration};

use deadpool_redis::redis::{self, AsyncCommands};
use perf_core::{MultiLevelCache, Tier};
use perf_redis::{Error, RedisTier};
use support::{RedisServer, cache_over as cache, local, within};

async fn tier(server: &RedisServer, namespace: &str, server_assisted: bool) -> Arc<RedisTier> {
    RedisTier::builder(server.url())
        .namespace(namespace)
        .server_assisted_invalidation(server_assisted)
        .build()
        .await
        .expect("tier builds")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

/// Reads `key` through to Redis until a local copy stays (a report of an earlier write may
/// still be on its way and drop the first copy).
async fn hold_copy(cache: &MultiLevelCache, key: &str) -> u32 {
    let held = within(Duration::from_secs(2), async || {
        let read = cache.get::<u32>(key, Tier::Redis).await.expect("ok");
        read.is_some() && local(cache, key).await.is_some()
    })
    .await;
    assert!(held.is_some(), "a local copy of {key}");
    local(cache, key).await.expect("held")
}

async fn tracking(tiers: &[&RedisTier]) {
    let up = within(Duration::from_secs(5), async || {
        tiers
            .iter()
            .all(|t| t.stats().backplane.tracking && t.stats().backplane.subscribed)
    })
    .await;
    assert!(up.is_some(), "tracking and subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_delete_or_set_drops_the_local_copy_of_an_instance_that_tracks() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A writes values in perf's envelope and announces nothing, so that nothing but Redis's
    // reports can drop the copies B and C take.
    let tier_a = RedisTier::builder(server.url())
        .namespace("ns")
        .backplane(false)
        .build()
        .await
        .expect("tier builds");
    let tier_b = tier(&server, "ns", true).await;
    // Without the mode: keeps its copy until TTL.
    let tier_c = tier(&server, "ns", false).await;
    let (a, b, c) = (cache(&tier_a), cache(&tier_b), cache(&tier_c));
    tracking(&[&tier_b]).await;
    // C's first subscription drops every shared copy (a resync): its copies are taken after.
    let c_subscribed = within(Duration::from_secs(5), async || {
        tier_c.stats().backplane.subscribed
    })
    .await;
    assert!(c_subscribed.is_some(), "C subscribed");
    for (key, value) in [("deleted", 1u32), ("overwritten", 2), ("donor", 3)] {
        a.set(key, value, Tier::Redis, None).await.expect("stored");
    }
    for key in ["deleted", "overwritten"] {
        hold_copy(&b, key).await;
        hold_copy(&c, key).await;
    }

    // Another program: DEL one key, SET the other to the bytes perf wrote for a third.
    let mut conn = raw(&server).await;
    let donor: Vec<u8> = conn.get("ns:donor").await.expect("GET");
    let _: () = conn.del("ns:deleted").await.expect("DEL");
    let _: () = conn.set("ns:overwritten", donor).await.expect("SET");

    let dropped = within(Duration::from_secs(2), async || {
        local(&b, "deleted").await.is_none() && local(&b, "overwritten").await.is_none()
    })
    .await;
    println!("a foreign DEL and SET reached the tracking instance in {dropped:?}");
    assert!(
        dropped.is_some(),
        "B dropped both copies: {:?}",
        tier_b.stats()
    );
    assert_eq!(
        b.get::<u32>("deleted", Tier::Redis).await.expect("ok"),
        None
    );
    assert_eq!(
        b.get::<u32>("overwritten", Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&3),
        "B reads the foreign value"
    );
    assert_eq!(local(&c, "deleted").await, Some(1), "C does not track");
    assert_eq!(local(&c, "overwritten").await, Some(2), "C does not track");
    assert!(tier_b.stats().backplane.tracked_invalidations >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_told_of_its_own_writes_and_drops_its_copy() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier_a = tier(&server, "own", true).await;
    let a = cache(&tier_a);
    tracking(&[&tier_a]).await;
    let before = tier_a.stats().backplane.tracked_invalidations;
    a.set("k", 1u32, Tier::Redis, None).await.expect("stored");
    // The write's own report comes back through Redis and drops the copy just stored: the
    // next read is a Redis hit, not a local one.
    let dropped = within(Duration::from_secs(2), async || {
        local(&a, "k").await.is_none()
    })
    .await;
    println!("an instance's own write dropped its own copy after {dropped:?}");
    assert!(dropped.is_some(), "{:?}", tier_a.stats());
    assert!(tier_a.stats().backplane.tracked_invalidations > before);
    assert_eq!(
        a.get::<u32>("k", Tier::Redis).await.expect("ok").as_deref(),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_comes_back_with_a_resync_and_tracks_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (tier_a, tier_b) = (
        tier(&server, "kill", true).await,
        tier(&server, "kill", true).await,
    );
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    tracking(&[&tier_a, &tier_b]).await;
    a.set("k", 1u32, Tier::Redis, None).await.expect("stored");
    hold_copy(&b, "k").await;

    // Every tracking connection (flag `t` in CLIENT LIST), A's and B's.
    let mut conn = raw(&server).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    let ids: Vec<u64> = list
        .lines()
        .filter(|line| {
            line.split(' ').any(|field| {
                field
                    .strip_prefix("flags=")
                    .is_some_and(|f| f.contains('t'))
            })
        })
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "two tracking connections in\n{list}");
    for id in ids {
        let _: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL");
    }

    let restarted = within(Duration::from_secs(5), async || {
        let stats = tier_b.stats().backplane;
        stats.tracking_restarts >= 1 && stats.tracking
    })
    .await;
    println!("tracking restarted after {restarted:?}");
    assert!(restarted.is_some(), "{:?}", tier_b.stats());
    assert_eq!(local(&b, "k").await, None, "the resync dropped B's copy");

    hold_copy(&b, "k").await;
    let _: () = conn.del("kill:k").await.expect("DEL");
    let dropped = within(Duration::from_secs(2), async || {
        local(&b, "k").await.is_none()
    })
    .await;
    assert!(
        dropped.is_some(),
        "tracking works again: {:?}",
        tier_b.stats()
    );
}

#[tokio::test]
async fn a_cluster_refuses_server_assisted_invalidation() {
    let refused = RedisTier::cluster_builder(["redis://127.0.0.1:1"])
        .server_assisted_invalidation(true)
        .build()
        .await;
    match refused {
        Err(Error::Config { message, .. }) => assert!(message.contains("cluster"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
