//! How long a write on one instance takes to drop another instance's copy, against the floor:
//! a bare Redis pub/sub round trip (PUBLISH on one connection, the message arriving on
//! another).
//!
//! Two instances in one process, each with its own pool and its own subscription, as two
//! processes would have: the path a change travels (SET, PUBLISH, Redis, the other
//! subscription, the local drop) is the same. Each sample starts before the write is called
//! and ends when the other instance no longer holds its copy. Percentiles over 1,000 samples.
//!
//! `cargo bench --bench backplane --features redis`; skipped, saying why, without
//! `redis-server`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

#[path = "../perf-redis/tests/support/mod.rs"]
#[allow(dead_code)] // the tests use more of the harness than the benchmark
mod support;

use std::time::{Duration, Instant};

use deadpool_redis::redis;
use futures_util::StreamExt;
use perf::{MultiLevelCache, Tier, redis::RedisTier};
use support::{RedisServer, cache_over as cache, within};

const SAMPLES: usize = 1000;

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Write on `a`, until `b` no longer holds its copy.
async fn propagation(
    a: &MultiLevelCache,
    b: &MultiLevelCache,
    tier_b: &RedisTier,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let key = format!("p:{i}");
        // B takes a copy only once it heard A's first write, which would drop it.
        let heard = tier_b.stats().backplane.messages_received;
        a.set(&key, 0u32, Tier::Redis, None).await.unwrap();
        within(Duration::from_secs(2), async || {
            tier_b.stats().backplane.messages_received > heard
        })
        .await
        .expect("B heard the first write");
        assert!(b.get::<u32>(&key, Tier::Redis).await.unwrap().is_some());

        let start = Instant::now();
        a.set(&key, 1u32, Tier::Redis, None).await.unwrap();
        while b.get::<u32>(&key, Tier::L2).await.unwrap().is_some() {
            // Gives the core to the subscriber (this thread is not a runtime worker): on two
            // cores a busy wait would delay the very message it waits for.
            std::thread::yield_now();
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "sample {i}: B kept its copy: {:?}",
                tier_b.stats()
            );
        }
        samples.push(start.elapsed());
    }
    samples
}

/// PUBLISH on one connection until the message arrives on another.
async fn pubsub_floor(server: &RedisServer) -> Vec<Duration> {
    let client = server.client();
    let mut subscriber = client.get_async_pubsub().await.unwrap();
    subscriber.subscribe("floor").await.unwrap();
    let mut messages = subscriber.on_message();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let start = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("floor")
            .arg(i)
            .query_async(&mut publisher)
            .await
            .unwrap();
        messages.next().await.unwrap();
        samples.push(start.elapsed());
    }
    samples
}

fn main() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tier = || RedisTier::builder(server.url()).namespace("bench").build();
        let (tier_a, tier_b) = (tier().await.unwrap(), tier().await.unwrap());
        let (a, b) = (cache(&tier_a), cache(&tier_b));
        let subscribed = within(Duration::from_secs(5), async || {
            tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
        })
        .await;
        assert!(subscribed.is_some(), "both instances subscribed");

        // Interleaved rounds, so that both arms see the same machine.
        let (mut ours, mut floor) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            ours.extend(propagation(&a, &b, &tier_b).await);
            floor.extend(pubsub_floor(&server).await);
        }
        let ((p50, p99), (f50, f99)) = (percentiles(ours), percentiles(floor));
        println!(
            "invalidation propagation, write called to the other instance's copy gone: \
             p50 {:.2} ms, p99 {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        println!(
            "floor, PUBLISH to message received: p50 {:.2} ms, p99 {:.2} ms \
             (perf/floor: p50 {:.2}x, p99 {:.2}x)",
            f50.as_secs_f64() * 1e3,
            f99.as_secs_f64() * 1e3,
            p50.as_secs_f64() / f50.as_secs_f64(),
            p99.as_secs_f64() / f99.as_secs_f64()
        );
    });
}
