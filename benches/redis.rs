//! The Redis tier against raw deadpool-redis, in the same run, printing the ratios.
//!
//! - 64 concurrent tasks reading 1 KiB values through the tier (L1/L2 bypassed: the tier is
//!   called directly) against raw deadpool-redis GETs, both decoding the same way, on pools
//!   of the same size. Stock deadpool-redis checks every checkout with an `UNWATCH` + `PING`
//!   round trip; the tier does not (see `perf-redis/src/pool.rs`), so a third arm, raw
//!   deadpool without that check, is the floor that shows the tier's own overhead. The ratios
//!   are medians over rounds of the arms interleaved: on a shared machine, arms measured one
//!   after the other for seconds each drift apart (0.76x to 0.98x for the same code).
//! - `get_many` of 100 keys (one MGET) against 100 sequential GETs.
//! - A `get` that reads a 1 KiB value from Redis (L1 and L2 too small to help), with values
//!   plain, authenticated and encrypted under `cache_encryption_keys`, interleaved.
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

use common::{interleaved, median_ns};
use criterion::{BenchmarkId, Criterion};
use deadpool_redis::redis;
use futures_util::future::BoxFuture;
use perf::{MultiLevelCache, PerformanceConfig, RemoteTier, Tier, redis::RedisTier};
use support::{RedisServer, cluster::RedisCluster};

const TASKS: usize = 64;
const KEYS: usize = 1000;
/// Microseconds per `get` that misses L1 and L2 and reads a 1 KiB value from Redis, with
/// values plain, authenticated and encrypted (`cache_encryption_keys`): the medians over
/// interleaved rounds.
fn sealed_reads(runtime: &tokio::runtime::Runtime, server: &RedisServer) -> [f64; 3] {
    use perf::config::{EncryptionKey, ValueProtection};
    const READS: usize = 300;
    let protections = [
        None,
        Some(ValueProtection::Authenticate),
        Some(ValueProtection::Encrypt),
    ];
    let keys: Vec<String> = (0..KEYS).map(|i| format!("s:{i}")).collect();
    let caches = protections.map(|protection| {
        let mut config = PerformanceConfig::default();
        // L1 and L2 too small to hold what a round reads: every get goes to Redis.
        config.cache.max_size = 1;
        config.cache.max_key_bytes = 64;
        config.cache.max_value_bytes = 4096;
        config.cache.l2_max_bytes = 8192;
        if let Some(protection) = protection {
            config.cache.encryption_keys = vec![EncryptionKey::new(
                "bench",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )];
            config.cache.value_protection = protection;
        }
        runtime.block_on(async {
            let namespace = format!("sealed{}", protection.map_or(0, |p| p as u8 + 1));
            let tier = RedisTier::builder(server.url())
                .namespace(namespace)
                .build()
                .await
                .unwrap();
            let cache = MultiLevelCache::builder(&config)
                .remote_tier(tier as Arc<dyn RemoteTier>)
                .build()
                .unwrap();
            for (i, key) in keys.iter().enumerate() {
                cache.set(key, value(i), Tier::Redis, None).await.unwrap();
            }
            cache
        })
    });
    let mut at = 0;
    let times = interleaved(caches.len(), ROUNDS, |arm, _| {
        let start = Instant::now();
        runtime.block_on(async {
            for _ in 0..READS {
                at = (at + 7) % keys.len();
                let got = caches[arm].get::<Vec<u8>>(&keys[at], Tier::Redis);
                black_box(decode(&got.await.unwrap().unwrap()));
            }
        });
        start.elapsed().as_secs_f64() * 1e6 / READS as f64
    });
    std::array::from_fn(|arm| times.median(arm))
}

/// Batch sizes asked of the cluster.
const CLUSTER_BATCHES: [usize; 3] = [10, 100, 1000];

fn value(i: usize) -> Vec<u8> {
    (0..1024).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

/// What both arms do with the bytes: check and sum them, standing in for a decode.
fn decode(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Runs exactly `iters` reads spread over `TASKS` tasks; returns the wall time.
async fn concurrent_reads(iters: u64, read: Arm) -> Duration {
    let iters = iters as usize;
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let read = Arc::clone(&read);
            let reads = iters / TASKS + usize::from(t < iters % TASKS);
            tokio::spawn(async move {
                let mut sum = 0;
                for i in 0..reads {
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

type Arm = Arc<dyn Fn(usize) -> BoxFuture<'static, u64> + Send + Sync>;

fn tier_arm(tier: &Arc<RedisTier>, keys: &Arc<Vec<String>>) -> Arm {
    let (tier, keys) = (Arc::clone(tier), Arc::clone(keys));
    Arc::new(move |i| {
        let (tier, keys) = (Arc::clone(&tier), Arc::clone(&keys));
        Box::pin(async move { decode(&tier.get(&keys[i]).await.unwrap().unwrap()) })
    })
}

fn raw_arm(pool: &deadpool_redis::Pool, keys: &Arc<Vec<String>>) -> Arm {
    let (pool, keys) = (pool.clone(), Arc::clone(keys));
    Arc::new(move |i| {
        let (pool, keys) = (pool.clone(), Arc::clone(&keys));
        Box::pin(async move {
            let mut conn = pool.get().await.unwrap();
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg(format!("bench:{}", keys[i]))
                .query_async(&mut conn)
                .await
                .unwrap();
            decode(&bytes)
        })
    })
}

/// deadpool-redis's manager without the `UNWATCH` + `PING` at every checkout.
struct NoPing(deadpool_redis::Manager);

impl deadpool::managed::Manager for NoPing {
    type Type = redis::aio::MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        deadpool::managed::Manager::create(&self.0).await
    }

    async fn recycle(
        &self,
        _: &mut Self::Type,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

fn no_ping_arm(pool: &deadpool::managed::Pool<NoPing>, keys: &Arc<Vec<String>>) -> Arm {
    let (pool, keys) = (pool.clone(), Arc::clone(keys));
    Arc::new(move |i| {
        let (pool, keys) = (pool.clone(), Arc::clone(&keys));
        Box::pin(async move {
            let mut conn = pool.get().await.unwrap();
            let bytes: Vec<u8> = redis::cmd("GET")
                .arg(format!("bench:{}", keys[i]))
                .query_async(&mut *conn)
                .await
                .unwrap();
            decode(&bytes)
        })
    })
}

const ROUNDS: usize = 11;
const READS_PER_ROUND: u64 = 8_000;

/// Rounds of every arm in turn (the order rotating); for each arm its median reads/s, and
/// the median over rounds of the first arm's throughput over its own in the same round.
fn interleaved_reads<const N: usize>(
    runtime: &tokio::runtime::Runtime,
    arms: &[(&str, Arm); N],
) -> [(f64, f64); N] {
    for (_, arm) in arms {
        runtime.block_on(concurrent_reads(READS_PER_ROUND / 4, Arc::clone(arm)));
    }
    let seconds_per_read = interleaved(N, ROUNDS, |arm, _| {
        let took = runtime.block_on(concurrent_reads(READS_PER_ROUND, Arc::clone(&arms[arm].1)));
        took.as_secs_f64() / READS_PER_ROUND as f64
    });
    std::array::from_fn(|arm| {
        (
            1.0 / seconds_per_read.median(arm),
            seconds_per_read.ratio(arm, 0),
        )
    })
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

    let no_ping_pool: deadpool::managed::Pool<NoPing> = deadpool::managed::Pool::builder(NoPing(
        deadpool_redis::Manager::new(server.url()).unwrap(),
    ))
    .max_size(16)
    .runtime(deadpool_redis::Runtime::Tokio1)
    .build()
    .unwrap();
    let arms: [(&str, Arm); 3] = [
        ("perf tier", tier_arm(&tier, &keys)),
        ("raw deadpool-redis", raw_arm(&pool, &keys)),
        (
            "raw deadpool without the checkout PING",
            no_ping_arm(&no_ping_pool, &keys),
        ),
    ];
    let interleaved = interleaved_reads(&runtime, &arms);

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let mut group = c.benchmark_group("redis_get_64_tasks");
    for (name, (_, arm)) in ["perf_tier", "raw_deadpool"].into_iter().zip(&arms) {
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter_custom(|iters| concurrent_reads(iters, Arc::clone(arm)))
        });
    }
    group.finish();

    // get_many through the cache, with L1 and L2 too small to help.
    let mut config = PerformanceConfig::default();
    config.cache.max_size = 1;
    config.cache.l2_max_bytes = 8 * 1024 * 1024;
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
    let sealed = sealed_reads(&runtime, &server);
    c.final_summary();

    println!("\n== ratios (medians) ==");
    if let (Some(ours), Some(raw)) = (
        median_ns("redis_get_64_tasks", "perf_tier"),
        median_ns("redis_get_64_tasks", "raw_deadpool"),
    ) {
        println!(
            "64 tasks reading 1 KiB, criterion (arms one after the other): perf tier {:.0} reads/s, raw deadpool-redis {:.0} reads/s: {:.2}x",
            1e9 / ours,
            1e9 / raw,
            raw / ours
        );
    }
    let [(ours, _), (raw, raw_ratio), (floor, floor_ratio)] = interleaved;
    println!(
        "64 tasks reading 1 KiB, {ROUNDS} interleaved rounds: perf tier {ours:.0} reads/s, raw deadpool-redis {raw:.0} reads/s: throughput ratio {raw_ratio:.2}x (target >= 0.9x); raw deadpool without the checkout PING {floor:.0} reads/s: {floor_ratio:.2}x (the tier's own overhead)"
    );
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
    let [plain, mac, aead] = sealed;
    println!(
        "a 1 KiB value read from Redis through the cache (L1 and L2 missed), {ROUNDS} interleaved \
         rounds: plain {plain:.1} us, authenticated {mac:.1} us ({:.2}x), encrypted {aead:.1} us \
         ({:.2}x)",
        mac / plain,
        aead / plain,
    );
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
