//! How long a write on one instance takes to drop another instance's copy, against the floor:
//! a bare Redis pub/sub round trip (PUBLISH on one connection, the message arriving on
//! another).
//!
//! Two instances in one process, each with its own pool and its own subscription, as two
//! processes would have: the path a change travels (SET, PUBLISH, Redis, the other
//! subscription, the local drop) is the same. Each sample starts before the write is called
//! and ends when the other instance no longer holds its copy. Percentiles over 1,000 samples.
//!
//! The same with server-assisted invalidation on: a write through perf (reported twice, by the
//! backplane and by Redis, the first to arrive dropping the copy), and a write by another
//! program (a bare SET, which only Redis reports).
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

/// How the measured write is made.
enum Writer<'a> {
    /// Through the other instance's cache.
    Perf(&'a MultiLevelCache),
    /// By another program: a bare SET of the namespaced key on its own connection.
    Foreign(redis::aio::MultiplexedConnection),
}

/// Write (on `a`, or by another program), until `b` no longer holds its copy. `tracks`:
/// `b` has server-assisted invalidation on, so it also hears Redis's reports.
async fn propagation(
    a: &MultiLevelCache,
    mut writer: Writer<'_>,
    b: &MultiLevelCache,
    tier_b: &RedisTier,
    tracks: bool,
) -> Vec<Duration> {
    let heard = || {
        let stats = tier_b.stats().backplane;
        (stats.messages_received, stats.tracked_invalidations)
    };
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let key = format!("p:{i}");
        // B takes a copy only once it heard A's first write (from the backplane and, when it
        // tracks, from Redis), which would drop it.
        let before = heard();
        a.set(&key, 0u32, Tier::Redis, None).await.unwrap();
        within(Duration::from_secs(2), async || {
            let now = heard();
            now.0 > before.0 && (!tracks || now.1 > before.1)
        })
        .await
        .expect("B heard the first write");
        assert!(b.get::<u32>(&key, Tier::Redis).await.unwrap().is_some());

        let start = Instant::now();
        match &mut writer {
            Writer::Perf(a) => a.set(&key, 1u32, Tier::Redis, None).await.unwrap(),
            Writer::Foreign(conn) => {
                let _: () = redis::cmd("SET")
                    .arg(format!("bench:{key}"))
                    .arg(b"foreign".as_slice())
                    .query_async(conn)
                    .await
                    .unwrap();
            }
        }
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
        let tier = |tracks: bool| {
            RedisTier::builder(server.url())
                .namespace("bench")
                .server_assisted_invalidation(tracks)
                .build()
        };
        let (tier_a, tier_b) = (tier(false).await.unwrap(), tier(false).await.unwrap());
        let (tracking_a, tracking_b) = (tier(true).await.unwrap(), tier(true).await.unwrap());
        let (a, b) = (cache(&tier_a), cache(&tier_b));
        let (ta, tb) = (cache(&tracking_a), cache(&tracking_b));
        let ready = within(Duration::from_secs(5), async || {
            [&tier_a, &tier_b, &tracking_a, &tracking_b]
                .iter()
                .all(|t| t.stats().backplane.subscribed)
                && tracking_a.stats().backplane.tracking
                && tracking_b.stats().backplane.tracking
        })
        .await;
        assert!(ready.is_some(), "every instance subscribed, two tracking");
        let foreign = || async { server.client().get_multiplexed_async_connection().await };

        // Interleaved rounds, so that every arm sees the same machine.
        let (mut ours, mut tracked, mut foreign_writes, mut floor) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            ours.extend(propagation(&a, Writer::Perf(&a), &b, &tier_b, false).await);
            tracked.extend(propagation(&ta, Writer::Perf(&ta), &tb, &tracking_b, true).await);
            let conn = foreign().await.unwrap();
            foreign_writes
                .extend(propagation(&ta, Writer::Foreign(conn), &tb, &tracking_b, true).await);
            floor.extend(pubsub_floor(&server).await);
        }
        // Its two writes per sample of the perf arm and its first write per foreign sample;
        // and the foreign SETs, and the untracked pair's two writes per sample (same keys).
        let own_writes = tracked.len() * 2 + foreign_writes.len();
        let changes = own_writes + foreign_writes.len() + ours.len() * 2;
        let own = tracking_a.stats().backplane.tracked_invalidations;
        let (f50, f99) = percentiles(floor);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let report = |what: &str, samples: Vec<Duration>| {
            let (p50, p99) = percentiles(samples);
            println!(
                "{what}: p50 {:.2} ms, p99 {:.2} ms (perf/floor: p50 {:.2}x, p99 {:.2}x)",
                ms(p50),
                ms(p99),
                p50.as_secs_f64() / f50.as_secs_f64(),
                p99.as_secs_f64() / f99.as_secs_f64()
            );
        };
        report(
            "invalidation propagation, write called to the other instance's copy gone",
            ours,
        );
        report(
            "  the same, server-assisted invalidation on (backplane and tracking)",
            tracked,
        );
        report(
            "  a foreign SET (not perf) to the tracking instance's copy gone",
            foreign_writes,
        );
        println!(
            "  the writing instance, tracking, heard {own} reports for {changes} changes, \
             {own_writes} of them its own writes (each drops the copy it just stored)"
        );
        println!(
            "floor, PUBLISH to message received: p50 {:.2} ms, p99 {:.2} ms",
            ms(f50),
            ms(f99)
        );
    });
}
