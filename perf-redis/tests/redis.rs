//! The Redis tier against a real Redis server.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use deadpool_redis::redis;
use perf_core::{PerformanceConfig, RemoteTier, Tier, query::QueryOptimizer};
use perf_redis::{BreakerState, RedisTier};
use support::{RedisServer, cache_over as cache, within};

async fn tier(server: &RedisServer, namespace: &str) -> Arc<RedisTier> {
    RedisTier::builder(server.url())
        .namespace(namespace)
        .circuit_breaker(3, Duration::from_millis(300))
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

/// The TTL reaches Redis as milliseconds (`PX`); that Redis then expires the value is the
/// conformance suite's check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ttl_reaches_redis_in_milliseconds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier = tier(&server, "trip").await;
    assert!(tier.stats().available);
    let cache = cache(&tier);
    cache
        .set(
            "ad:1",
            "banner".to_string(),
            Tier::Redis,
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("stored");

    let mut conn = raw(&server).await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg("trip:ad:1")
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(
        (59_000..=60_000).contains(&ttl_ms),
        "PX TTL in Redis: {ttl_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_on_one_instance_drops_the_other_instances_copy() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (tier_a, tier_b) = (tier(&server, "shared").await, tier(&server, "shared").await);
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
    // A's first set is announced too; let it reach B before B reads, or it could
    // drop the copy B is about to take.
    let heard = within(Duration::from_secs(1), async || {
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
    let dropped = within(Duration::from_millis(100), async || {
        b.get::<u32>("price", Tier::L1)
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;
    assert!(
        dropped.is_some(),
        "B's stale copy was dropped within 100 ms"
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
    assert!(tier_b.stats().backplane.messages_received >= 2);
    // A counts a message once Redis acknowledged it, which can come after B heard it.
    let sent = within(Duration::from_secs(1), async || {
        tier_a.stats().backplane.messages_sent >= 2
    })
    .await;
    assert!(sent.is_some(), "{:?}", tier_a.stats());

    // Deletes and prefix invalidations travel too.
    let before = tier_b.stats().backplane.messages_received;
    a.set("user:1", 1u8, Tier::Redis, None)
        .await
        .expect("stored");
    let heard = within(Duration::from_secs(1), async || {
        tier_b.stats().backplane.messages_received > before
    })
    .await;
    assert!(heard.is_some(), "B heard A's set");
    b.get::<u8>("user:1", Tier::Redis).await.expect("ok");
    assert_eq!(
        b.get::<u8>("user:1", Tier::L1).await.expect("ok"),
        Some(Arc::new(1)),
        "B holds a copy before the invalidation"
    );
    a.invalidate_prefix("user:").await.expect("ok");
    let dropped = within(Duration::from_millis(100), async || {
        b.get::<u8>("user:1", Tier::L1)
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;
    assert!(dropped.is_some(), "prefix invalidation reached B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_invalidated_on_one_instance_drops_every_instances_cached_reads() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (tier_a, tier_b) = (tier(&server, "rows").await, tier(&server, "rows").await);
    let config = PerformanceConfig::default();
    let query_a = QueryOptimizer::new(&config, cache(&tier_a));
    let query_b = QueryOptimizer::new(&config, cache(&tier_b));
    let subscribed = within(Duration::from_secs(5), async || {
        tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");

    let loads = AtomicUsize::new(0);
    let read = async |query: &QueryOptimizer| {
        query
            .cached_query(
                "SELECT title FROM ads JOIN campaigns ON ads.campaign = campaigns.id WHERE ads.id = ?",
                &(1,),
                None,
                || async {
                    let n = loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(format!("load {n}"))
                },
            )
            .await
            .map(|rows| (*rows).clone())
    };
    assert_eq!(read(&query_a).await, Ok("load 0".to_owned()));
    assert_eq!(read(&query_a).await, Ok("load 0".to_owned()), "cached on A");

    // B never ran the query; its write to `campaigns` still reaches A's cached read.
    let heard = tier_a.stats().backplane.messages_received;
    query_b
        .invalidate_table("Campaigns")
        .await
        .expect("invalidated");
    let reached = within(Duration::from_secs(1), async || {
        tier_a.stats().backplane.messages_received > heard
    })
    .await;
    assert!(reached.is_some(), "A heard B's invalidation");
    assert_eq!(
        read(&query_a).await,
        Ok("load 1".to_owned()),
        "A read the database again"
    );
    assert_eq!(
        read(&query_b).await,
        Ok("load 1".to_owned()),
        "and B shares the new rows"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_then_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let tier = tier(&server, "crash").await;
    let cache = cache(&tier);
    let loads = AtomicUsize::new(0);
    for i in 0..1000u32 {
        if i == 300 {
            server.kill();
        }
        let key = format!("item:{}", i % 50);
        // Every value is loaded fresh from the local tiers' point of view.
        cache.clear(Tier::L1).await.expect("local clear");
        cache.clear(Tier::L2).await.expect("local clear");
        let value = cache
            .get_or_load(&key, Tier::Redis, None, || async {
                loads.fetch_add(1, Ordering::Relaxed);
                Ok::<_, perf_core::Error>(i % 50)
            })
            .await
            .unwrap_or_else(|error| panic!("call {i}: {error}"));
        assert_eq!(*value, i % 50, "call {i}");
    }
    let stats = tier.stats();
    assert!(stats.breaker_openings >= 1, "{stats:?}");
    assert!(
        stats.short_circuited > 0,
        "an open breaker answers at once: {stats:?}"
    );
    assert!(
        loads.load(Ordering::Relaxed) >= 700,
        "loaders ran while Redis was down"
    );

    server.restart();
    let back = within(Duration::from_secs(2), async || {
        let _ = cache.set("probe", 7u8, Tier::Redis, None).await;
        cache.clear(Tier::L1).await.is_ok()
            && cache.clear(Tier::L2).await.is_ok()
            && cache
                .get::<u8>("probe", Tier::Redis)
                .await
                .ok()
                .flatten()
                .is_some()
    })
    .await;
    assert!(
        back.is_some(),
        "hits came back within 2 s: {:?}",
        tier.stats()
    );
    assert_eq!(tier.stats().breaker, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_calls_costs_no_failed_call() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let tier = RedisTier::builder(server.url())
        .namespace("restart")
        .pool_size(4)
        .circuit_breaker(3, Duration::from_secs(5))
        .backplane(false)
        .build()
        .await
        .expect("tier builds");
    // Every pooled connection has just been answered on: the next checkouts skip the check.
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        tier.get("a"),
        tier.get("b"),
        tier.get("c"),
        tier.get("d"),
        tier.get("e"),
        tier.get("f"),
        tier.get("g"),
        tier.get("h")
    );
    for read in [a, b, c, d, e, f, g, h] {
        assert!(read.is_ok());
    }
    let restarted = Instant::now();
    server.restart(); // every pooled connection is now dead
    for i in 0..20 {
        let read = tier.get(&format!("k{i}")).await;
        assert!(read.is_ok(), "call {i}: {read:?} {:?}", tier.stats());
    }
    let stats = tier.stats();
    assert_eq!(
        (stats.errors, stats.timeouts, stats.breaker_openings),
        (0, 0, 0),
        "a call that finds its connection dropped is sent again on a checked one; restart took {:?}",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_not_an_error() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.kill();
    let tier = tier(&server, "down").await;
    assert!(
        !tier.stats().available,
        "the tier reports itself unavailable"
    );
    let cache = cache(&tier);
    let value = cache
        .get_or_load("k", Tier::Redis, None, || async {
            Ok::<_, perf_core::Error>(5u8)
        })
        .await;
    assert_eq!(*value.expect("loaded"), 5);
    assert_eq!(
        cache.get::<u8>("k", Tier::L2).await.expect("ok"),
        Some(Arc::new(5))
    );
    // The size sample is not asked of a Redis known to be down, and counts no error.
    let errors = tier.stats().short_circuited;
    assert_eq!(tier.used_bytes().await.expect("not asked"), None);
    assert_eq!(tier.stats().short_circuited, errors);
}

/// `cache_size_bytes{tier="redis"}` is the server's `used_memory`, which a value written
/// through the tier raises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_bytes_is_the_servers_used_memory() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier = tier(&server, "size").await;
    let before = tier.used_bytes().await.expect("asked").expect("a size");
    let mut conn = raw(&server).await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("info");
    let reported: u64 = info
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("used_memory:"))
        .and_then(|bytes| bytes.parse().ok())
        .expect("used_memory");
    // The two INFO calls see nearly the same server (a connection's buffers apart).
    assert!(
        before.abs_diff(reported) < 64 * 1024,
        "{before} against {reported}"
    );
    tier.set("big", &vec![1u8; 1 << 20], Duration::from_secs(60))
        .await
        .expect("stored");
    let after = tier.used_bytes().await.expect("asked").expect("a size");
    assert!(after >= before + (1 << 20), "{before}, then {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_resubscribes_and_drops_shared_copies() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let tier = tier(&server, "resub").await;
    let cache = cache(&tier);
    let subscribed = within(Duration::from_secs(5), async || {
        tier.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some());
    cache
        .set("shared", 1u8, Tier::Redis, None)
        .await
        .expect("stored");
    cache
        .set("local", 2u8, Tier::L2, None)
        .await
        .expect("stored");

    server.kill();
    server.restart();
    let resubscribed = within(Duration::from_secs(5), async || {
        tier.stats().backplane.resubscriptions >= 1 && tier.stats().backplane.subscribed
    })
    .await;
    assert!(resubscribed.is_some(), "{:?}", tier.stats());
    assert_eq!(
        cache.get::<u8>("shared", Tier::L2).await.expect("ok"),
        None,
        "invalidations may have been missed: the shared copy is gone"
    );
    assert_eq!(
        cache.get::<u8>("local", Tier::L2).await.expect("ok"),
        Some(Arc::new(2)),
        "a value that never went to Redis stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_authenticates() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "s3cret"]) else {
        return;
    };
    let with_password = format!("redis://:s3cret@127.0.0.1:{}/0", server.port());
    let tier = RedisTier::builder(with_password)
        .namespace("auth")
        .build()
        .await
        .expect("builds");
    assert!(tier.stats().available, "{:?}", tier.stats());
    let cache = cache(&tier);
    cache
        .set("k", 1u8, Tier::Redis, None)
        .await
        .expect("authenticated write");

    let wrong = format!("redis://:wrong@127.0.0.1:{}/0", server.port());
    let refused = RedisTier::builder(wrong)
        .namespace("auth")
        .build()
        .await
        .expect("builds");
    assert!(
        !refused.stats().available,
        "a wrong password leaves the tier unavailable"
    );

    let bad = RedisTier::builder("http://127.0.0.1/").build().await;
    let Err(bad) = bad else {
        panic!("an http:// URL is refused");
    };
    assert!(matches!(bad, perf_redis::Error::Config { .. }), "{bad:?}");
    let source = std::error::Error::source(&bad).expect("the client's own error");
    assert!(
        source.is::<perf_redis::deadpool_redis::redis::RedisError>(),
        "{source:?}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_speaks_tls() {
    let Some(server) = RedisServer::start_tls() else {
        return;
    };
    assert!(server.url().starts_with("rediss://"));
    let tier = tier(&server, "tls").await;
    assert!(tier.stats().available, "{:?}", tier.stats());
    let cache = cache(&tier);
    cache
        .set("k", 9u8, Tier::Redis, None)
        .await
        .expect("stored over TLS");
    cache.clear(Tier::L1).await.expect("ok");
    cache.clear(Tier::L2).await.expect("ok");
    assert_eq!(
        cache.get::<u8>("k", Tier::Redis).await.expect("ok"),
        Some(Arc::new(9))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_serves_a_stale_value_from_redis_when_its_source_fails() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier_a = tier(&server, "stale").await;
    let tier_b = tier(&server, "stale").await;
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    let options = perf_core::cache::LoadOptions::new(Tier::Redis)
        .ttl(Duration::from_millis(300))
        .fail_safe(Duration::from_secs(3600));
    a.get_or_load_with("ad:1", &options, || async {
        Ok::<_, String>("banner".to_string())
    })
    .await
    .expect("stored");
    let mut conn = raw(&server).await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg("stale:ad:1")
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(
        ttl_ms > 3_600_000,
        "Redis keeps the stale period too: {ttl_ms} ms"
    );

    // Past the TTL (the wait only has to outlast it), B has no local copy and its source fails.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.get::<String>("ad:1", Tier::Redis).await.expect("ok"),
        None,
        "expired for a plain read"
    );
    let loaded = b
        .get_or_load_with("ad:1", &options, || async {
            Err::<String, _>("database down".to_string())
        })
        .await
        .expect("stale, not the error");
    assert_eq!(loaded.value.as_str(), "banner");
    assert_eq!(loaded.freshness, perf_core::cache::Freshness::Stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_opens_the_breaker_and_a_dropped_probe_does_not_keep_it_open() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cool_down = Duration::from_millis(300);
    let tier = RedisTier::builder(server.url())
        .namespace("frozen")
        .op_timeout(Duration::from_millis(400))
        .circuit_breaker(3, cool_down)
        .backplane(false)
        .build()
        .await
        .expect("tier builds");
    assert!(tier.get("k").await.is_ok());

    // Callers give up after 250 ms, before the 400 ms operation timeout, yet past half of it.
    server.freeze();
    for _ in 0..3 {
        let gave_up = tokio::time::timeout(Duration::from_millis(250), tier.get("k")).await;
        assert!(gave_up.is_err(), "Redis is frozen");
    }
    assert_eq!(
        tier.stats().breaker,
        BreakerState::Open,
        "calls dropped by impatient callers still count against a frozen Redis"
    );
    server.thaw();

    // The probe after the cool-down is dropped mid-flight by its caller: polled once (it then
    // waits for Redis) and dropped; a timeout would race the round trip, timers firing on a
    // 1 ms tick. Until the cool-down has passed (a busy machine may stretch it), calls are
    // refused at once instead.
    tokio::time::sleep(cool_down).await;
    let dropped = within(Duration::from_secs(5), async || {
        let mut probe = tier.get("k");
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(probe.as_mut().poll(cx))).await;
        first_poll.is_pending()
    })
    .await;
    assert!(dropped.is_some(), "a probe's caller gave up mid-flight");
    let healed = within(Duration::from_secs(5), async || tier.get("k").await.is_ok()).await;
    assert!(
        healed.is_some(),
        "the breaker is not stuck half-open: {:?}",
        tier.stats()
    );
    assert_eq!(tier.stats().breaker, BreakerState::Closed);
}
