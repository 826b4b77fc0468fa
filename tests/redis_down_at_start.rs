//! With Redis unreachable at start, `install()` still succeeds and callers keep working from
//! the local tiers and their loaders. Needs no Redis server: nothing listens on the port.
#![cfg(feature = "redis")]

use std::{net::TcpListener, time::Duration};

use perf::{PerformanceOptimizer, Tier, redis::RedisTier};

#[tokio::test]
async fn install_succeeds_and_callers_keep_working() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let redis = RedisTier::builder(format!("redis://127.0.0.1:{port}/"))
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("an unreachable Redis is not a build error");
    assert!(!redis.stats().available);

    let optimizer = PerformanceOptimizer::builder()
        .remote_tier(redis.clone())
        .build()
        .expect("valid")
        .install()
        .expect("install succeeds without Redis");
    let cache = optimizer.cache();
    for round in 0..3 {
        let ad = cache
            .get_or_load("ad:1", Tier::Redis, None, || async {
                Ok::<_, std::io::Error>(round)
            })
            .await
            .expect("the loader's value, never a Redis error");
        assert_eq!(*ad, 0, "loaded once, then served from L1");
    }
    let stats = redis.stats();
    assert!(
        stats.short_circuited >= 1,
        "the open breaker answered at once: {stats:?}"
    );
}
