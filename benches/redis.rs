//! The Redis tier against raw deadpool-redis, in the same run, printing the ratios.
//!
//! - 64 concurrent tasks reading 1 KiB values through the tier (L1/L2 bypassed: the tier is
//!   called directly) against raw deadpool-redis GETs, both decoding the same way.
//! - `get_many` of 100 keys (one MGET) against 100 sequential GETs.
//! - On a three-primary Redis Cluster, through the tier (L1/L2 bypassed): `get_many` of 10,
//!   100 and 1000 keys spread over the hash slots (one MGET per slot, concurrent) against as
//!   many sequential GETs.
//!
//! `cargo bench --bench redis --features redis`; skipped, saying why, without `redis-server`
//! (the cluster part without `redis-cli` too).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

#[path = "../perf-redis/tests/support/mod.rs"]
#[allow(dead_code)] // the tests use more of the harness than the benchmark
mod support;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use common::median_ns;
use criterion::{BenchmarkId, Criterion};
use deadpool_redis::redis;
use perf::{MultiLevelCache, PerformanceConfig, RemoteTier, Tier, redis::RedisTier};
use support::{RedisServer, cluster::RedisCluster};

const TASKS: usize = 64;
const KEYS: usize = 1000;
/// Batch sizes asked of the cluster.
const CLUSTER_BATCHES: [usize; 3] = [10, 100, 1000];

fn value(i: usize) -> Vec<u8> {
    (0..1024).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

/// What both arms do with the bytes: check and sum them, standing in for a decode.
fn decode(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Runs `iters` reads spread over `TASKS` tasks; returns the wall time.
async fn concurrent_reads<F, Fut>(iters: u64, read: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send,
{
    let read = Arc::new(read);
    let per_task = (iters as usize).div_ceil(TASKS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let read = Arc::clone(&read);
            tokio::spawn(async move {
                let mut sum = 0;
                for i in 0..per_task {
                    sum += read((t * 7919 + i) % KEYS).await;
                }
                sum
            })
        })
        .collect();
    for task in tasks {
        black_box(task.await.unwrap());
    }
    start.elapsed()
}

fn main() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("v:{i}")).collect();
    let tier = runtime.block_on(async {
        let tier = RedisTier::builder(server.url())
            .namespace("bench")
            .pool_size(16)
            .build()
            .await
            .unwrap();
        for (i, key) in keys.iter().enumerate() {
            tier.set(key, &value(i), Duration::from_secs(3600))
                .await
                .unwrap();
        }
        tier
    });
    let pool = deadpool_redis::Config::from_url(server.url())
        .builder()
        .unwrap()
        .max_size(16)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .unwrap();
    let keys = Arc::new(keys);

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let mut group = c.benchmark_group("redis_get_64_tasks");
    group.bench_function("perf_tier", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (tier, keys) = (Arc::clone(&tier), Arc::clone(&keys));
            async move {
                concurrent_reads(iters, move |i| {
                    let (tier, keys) = (Arc::clone(&tier), Arc::clone(&keys));
                    async move { decode(&tier.get(&keys[i]).await.unwrap().unwrap()) }
                })
                .await
            }
        })
    });
    group.bench_function("raw_deadpool", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (pool, keys) = (pool.clone(), Arc::clone(&keys));
            async move {
                concurrent_reads(iters, move |i| {
                    let (pool, keys) = (pool.clone(), Arc::clone(&keys));
                    async move {
                        let mut conn = pool.get().await.unwrap();
                        let bytes: Vec<u8> = redis::cmd("GET")
                            .arg(format!("bench:{}", keys[i]))
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        decode(&bytes)
                    }
                })
                .await
            }
        })
    });
    group.finish();

    // get_many through the cache, with L1 and L2 too small to help.
    let config = PerformanceConfig {
        cache_max_size: 1,
        l2_max_bytes: 8 * 1024 * 1024,
        ..PerformanceConfig::default()
    };
    let cache = MultiLevelCache::builder(&config)
        .remote_tier(Arc::clone(&tier) as Arc<dyn RemoteTier>)
        .build()
        .unwrap();
    let batch: Vec<String> = (0..100).map(|i| format!("m:{i}")).collect();
    runtime.block_on(async {
        for (i, key) in batch.iter().enumerate() {
            cache.set(key, value(i), Tier::Redis, None).await.unwrap();
        }
    });
    let batch_refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("redis_100_keys");
    group.bench_function("perf_get_many", |b| {
        b.to_async(&runtime).iter(|| async {
            cache.clear(Tier::L2).await.unwrap();
            let got = cache
                .get_many::<Vec<u8>>(&batch_refs, Tier::Redis)
                .await
                .unwrap();
            assert!(got.iter().all(Option::is_some));
            black_box(got)
        })
    });
    group.bench_function("sequential_get", |b| {
        b.to_async(&runtime).iter(|| async {
            cache.clear(Tier::L2).await.unwrap();
            let mut got = Vec::with_capacity(batch.len());
            for key in &batch_refs {
                cache.clear(Tier::L1).await.unwrap();
                got.push(cache.get::<Vec<u8>>(key, Tier::Redis).await.unwrap());
            }
            assert!(got.iter().all(Option::is_some));
            black_box(got)
        })
    });
    group.finish();

    // On a cluster, through the tier: one get_many against as many sequential gets.
    let cluster = RedisCluster::start();
    if let Some(cluster) = &cluster {
        let keys: Vec<String> = (0..KEYS).map(|i| format!("c:{i}")).collect();
        let tier = runtime.block_on(async {
            let tier = RedisTier::cluster_builder(cluster.urls_from(0))
                .namespace("bench")
                .pool_size(16)
                .build()
                .await
                .unwrap();
            for (i, key) in keys.iter().enumerate() {
                tier.set(key, &value(i), Duration::from_secs(3600))
                    .await
                    .unwrap();
            }
            tier
        });
        let mut group = c.benchmark_group("redis_cluster_keys");
        for n in CLUSTER_BATCHES {
            let batch: Vec<&str> = keys[..n].iter().map(String::as_str).collect();
            group.bench_with_input(BenchmarkId::new("tier_get_many", n), &batch, |b, batch| {
                b.to_async(&runtime).iter(|| async {
                    let got = tier.get_many(batch).await.unwrap();
                    assert!(got.iter().all(Option::is_some));
                    black_box(got)
                })
            });
            group.bench_with_input(
                BenchmarkId::new("tier_sequential_get", n),
                &batch,
                |b, batch| {
                    b.to_async(&runtime).iter(|| async {
                        let mut got = Vec::with_capacity(batch.len());
                        for key in batch {
                            got.push(tier.get(key).await.unwrap());
                        }
                        assert!(got.iter().all(Option::is_some));
                        black_box(got)
                    })
                },
            );
        }
        group.finish();
    }
    c.final_summary();

    println!("\n== ratios (medians) ==");
    if let (Some(ours), Some(raw)) = (
        median_ns("redis_get_64_tasks", "perf_tier"),
        median_ns("redis_get_64_tasks", "raw_deadpool"),
    ) {
        println!(
            "64 tasks reading 1 KiB: perf tier {:.0} reads/s, raw deadpool-redis {:.0} reads/s: throughput ratio {:.2}x (target >= 0.9x)",
            1e9 / ours,
            1e9 / raw,
            raw / ours
        );
    }
    if let (Some(many), Some(seq)) = (
        median_ns("redis_100_keys", "perf_get_many"),
        median_ns("redis_100_keys", "sequential_get"),
    ) {
        println!(
            "100 keys: get_many {:.0} us, 100 sequential gets {:.0} us: {:.1}x faster",
            many / 1000.0,
            seq / 1000.0,
            seq / many
        );
    }
    for n in CLUSTER_BATCHES {
        if let (Some(many), Some(seq)) = (
            median_ns("redis_cluster_keys", &format!("tier_get_many/{n}")),
            median_ns("redis_cluster_keys", &format!("tier_sequential_get/{n}")),
        ) {
            println!(
                "cluster, {n} keys through the tier: get_many {:.0} us, {n} sequential gets {:.0} us: {:.1}x faster",
                many / 1000.0,
                seq / 1000.0,
                seq / many
            );
        }
    }
}
