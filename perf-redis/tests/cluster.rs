//! The Redis tier on a real three-primary Redis Cluster.
//!
//! The checks that hold for any deployment run twice, on a cluster (`cluster::…`) and on a
//! single server (`server::…`), and look at what every node holds directly (a server is one
//! node). Failing over the backplane's subscription is the cluster's own test; what every
//! remote tier does is the conformance suite's (`conformance.rs`).

mod support;

use std::{sync::Arc, time::Duration};

use deadpool_redis::redis;
use perf_core::{RemoteTier, Tier};
use perf_redis::{BreakerState, RedisTier, RedisTierBuilder};
use support::{RedisServer, cache_over as cache, cluster::RedisCluster, within};

/// Where the tiers under test connect.
enum Deployment {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Deployment {
    fn server() -> Option<Self> {
        RedisServer::start().map(Self::Server)
    }

    fn cluster() -> Option<Self> {
        RedisCluster::start().map(Self::Cluster)
    }

    /// A tier in `namespace`. On a cluster its node list starts at node `first`, where its
    /// backplane subscribes.
    async fn tier(&self, namespace: &str, first: usize) -> Arc<RedisTier> {
        match self {
            Self::Server(server) => tier(RedisTier::builder(server.url()), namespace).await,
            Self::Cluster(cluster) => {
                tier(
                    RedisTier::cluster_builder(cluster.urls_from(first)),
                    namespace,
                )
                .await
            }
        }
    }

    /// Raw connections to every node, bypassing the tier.
    fn nodes(&self) -> Vec<redis::Client> {
        match self {
            Self::Server(server) => vec![server.client()],
            Self::Cluster(cluster) => cluster.nodes(),
        }
    }
}

async fn tier(builder: RedisTierBuilder, namespace: &str) -> Arc<RedisTier> {
    builder
        .namespace(namespace)
        // Generous: the test machine may be busy starting other tests' clusters.
        .op_timeout(Duration::from_secs(1))
        .circuit_breaker(3, Duration::from_millis(300))
        .build()
        .await
        .expect("tier builds")
}

/// The keys matching `pattern` on each node, asked of each node directly.
async fn keys_per_node(deployment: &Deployment, pattern: &str) -> Vec<Vec<String>> {
    let mut per_node = Vec::new();
    for node in deployment.nodes() {
        let mut conn = node
            .get_multiplexed_async_connection()
            .await
            .expect("connects");
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("scan");
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        per_node.push(keys);
    }
    per_node
}

/// Runs each check on a server and on a cluster, skipping (having said why) without Redis.
macro_rules! on_every_deployment {
    ($($check:ident),* $(,)?) => {
        mod server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(deployment) = super::Deployment::server() {
                        super::$check(deployment).await;
                    }
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(deployment) = super::Deployment::cluster() {
                        super::$check(deployment).await;
                    }
                }
            )*
        }
    };
}

on_every_deployment!(
    many_keys_round_trip_and_spread_over_every_node,
    a_write_on_one_instance_drops_the_others_copy,
);

async fn many_keys_round_trip_and_spread_over_every_node(deployment: Deployment) {
    let tier = deployment.tier("spread", 0).await;
    let cache = cache(&tier);
    for i in 0..300u32 {
        cache
            .set(&format!("k:{i}"), i, Tier::Redis, None)
            .await
            .expect("stored");
    }
    cache.clear(Tier::L1).await.expect("ok");
    cache.clear(Tier::L2).await.expect("ok");
    for i in 0..300u32 {
        let got = cache
            .get::<u32>(&format!("k:{i}"), Tier::Redis)
            .await
            .expect("ok");
        assert_eq!(got.as_deref(), Some(&i), "k:{i}");
    }
    let per_node = keys_per_node(&deployment, "spread:k:*").await;
    assert!(
        per_node.iter().all(|keys| !keys.is_empty()),
        "no hash tag pins the namespace to one node: {:?}",
        per_node.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(per_node.iter().map(Vec::len).sum::<usize>(), 300);
    let stats = tier.stats();
    assert_eq!((stats.errors, stats.timeouts), (0, 0), "{stats:?}");
}

async fn a_write_on_one_instance_drops_the_others_copy(deployment: Deployment) {
    // On a cluster, A subscribes on node 0 and B on node 1.
    let (tier_a, tier_b) = (
        deployment.tier("shared", 0).await,
        deployment.tier("shared", 1).await,
    );
    assert_ne!(tier_a.instance_id(), tier_b.instance_id());
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    let subscribed = within(Duration::from_secs(5), async || {
        tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");

    a.set("price", 1u32, Tier::Redis, None)
        .await
        .expect("stored");
    // Let A's first set reach B before B reads, or it could drop the copy B is about to take.
    let heard = within(Duration::from_secs(2), async || {
        tier_b.stats().backplane.messages_received >= 1
    })
    .await;
    assert!(heard.is_some(), "B heard A's first set");
    assert_eq!(
        b.get::<u32>("price", Tier::Redis).await.expect("ok"),
        Some(Arc::new(1))
    );
    assert_eq!(
        b.get::<u32>("price", Tier::L1).await.expect("ok"),
        Some(Arc::new(1)),
        "B holds a copy"
    );

    a.set("price", 2u32, Tier::Redis, None)
        .await
        .expect("stored");
    let heard = within(Duration::from_secs(2), async || {
        tier_b.stats().backplane.messages_received >= 2
    })
    .await;
    assert!(heard.is_some(), "B heard A's second set");
    assert_eq!(
        b.get::<u32>("price", Tier::L1).await.expect("ok"),
        None,
        "B's stale copy was dropped"
    );
    assert_eq!(
        b.get::<u32>("price", Tier::Redis).await.expect("ok"),
        Some(Arc::new(2))
    );
    assert_eq!(
        a.get::<u32>("price", Tier::L1).await.expect("ok"),
        Some(Arc::new(2)),
        "A ignored its own message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_the_backplane_moves_to_another_node_when_its_node_dies() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    // B subscribes on a node that serves neither the channel nor the key, so that the
    // cluster still takes A's writes and messages once that node is dead.
    let serving = [
        cluster.node_serving("failover:__invalidate"),
        cluster.node_serving("failover:price"),
    ];
    let victim = (0..3)
        .find(|node| !serving.contains(node))
        .expect("three nodes");
    let (tier_a, tier_b) = (
        tier(
            RedisTier::cluster_builder(cluster.urls_from(victim + 1)),
            "failover",
        )
        .await,
        tier(
            RedisTier::cluster_builder(cluster.urls_from(victim)),
            "failover",
        )
        .await,
    );
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    let subscribed = within(Duration::from_secs(5), async || {
        tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");
    let mut victim_conn = cluster.nodes()[victim]
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("failover:__invalidate")
        .query_async(&mut victim_conn)
        .await
        .expect("numsub");
    assert_eq!(subscribers, 1, "B, alone, subscribed on the victim");

    cluster.kill(victim);
    let resubscribed = within(Duration::from_secs(5), async || {
        let backplane = tier_b.stats().backplane;
        backplane.resubscriptions >= 1 && backplane.subscribed
    })
    .await;
    assert!(resubscribed.is_some(), "{:?}", tier_b.stats());

    a.set("price", 1u32, Tier::Redis, None)
        .await
        .expect("stored");
    let heard = within(Duration::from_secs(2), async || {
        tier_b.stats().backplane.messages_received >= 1
    })
    .await;
    assert!(heard.is_some(), "B hears A on another node");
    assert_eq!(
        b.get::<u32>("price", Tier::Redis).await.expect("ok"),
        Some(Arc::new(1))
    );
    a.set("price", 2u32, Tier::Redis, None)
        .await
        .expect("stored");
    let dropped = within(Duration::from_secs(2), async || {
        tier_b.stats().backplane.messages_received >= 2
    })
    .await;
    assert!(dropped.is_some(), "B heard A's second set");
    assert_eq!(b.get::<u32>("price", Tier::L1).await.expect("ok"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_down_opens_the_breaker_one_failure_per_call() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let tier = tier(RedisTier::cluster_builder(cluster.urls_from(0)), "down").await;
    let keys: Vec<String> = (0..50).map(|i| format!("k:{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(tier.get_many(&keys).await.expect("up").len(), 50);
    for node in 0..3 {
        cluster.kill(node);
    }
    // A get_many over many slots is one call to the breaker: three of them open it.
    for _ in 0..3 {
        assert!(tier.get_many(&keys).await.is_err());
    }
    let stats = tier.stats();
    assert_eq!(stats.errors + stats.timeouts, 3, "{stats:?}");
    assert_eq!(stats.breaker, BreakerState::Open, "{stats:?}");
    assert!(tier.get("k:1").await.is_err());
    assert!(tier.invalidate_prefix("k:").await.is_err());
    let stats = tier.stats();
    // The two calls, and any attempt of the replay of the queued prefix removal.
    assert!(stats.short_circuited >= 2, "{stats:?}");
    assert_eq!(stats.pending_changes, 1, "{stats:?}");
    assert_eq!(stats.errors + stats.timeouts, 3, "{stats:?}");
}
