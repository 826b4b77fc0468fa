//! The remote tier's conformance suite (`perf_core::conformance`) on a Redis server and on a
//! Redis Cluster; each skips, having said why, without Redis.

mod support;

use std::{sync::Arc, time::Duration};

use perf_core::RemoteTier;
use perf_redis::{RedisTier, RedisTierBuilder};
use support::{RedisServer, cluster::RedisCluster};

async fn tier(builder: RedisTierBuilder, namespace: &str) -> Arc<dyn RemoteTier> {
    builder
        .namespace(namespace)
        // Generous: the test machine may be busy starting other tests' clusters.
        .op_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("tier builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_server_conforms() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    perf_core::conformance::run(async |namespace: &str| {
        tier(RedisTier::builder(server.url()), namespace).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_conforms() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    perf_core::conformance::run(async |namespace: &str| {
        tier(RedisTier::cluster_builder(cluster.urls_from(0)), namespace).await
    })
    .await;
}
