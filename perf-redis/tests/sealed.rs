//! Sealed values in a real Redis: what someone who can write to Redis, but holds no key, can
//! make an instance serve (nothing), and a security invalidation heard by every instance.

mod support;

use std::{sync::Arc, time::Duration};

use deadpool_redis::redis::AsyncCommands;
use perf_core::{
    MultiLevelCache, PerformanceConfig, RemoteTier, Tier,
    cache::Revocation,
    config::{EncryptionKey, ValueProtection},
};
use perf_redis::RedisTier;
use support::{RedisServer, within};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn sealed_cache(tier: &Arc<RedisTier>, protection: ValueProtection) -> MultiLevelCache {
    let mut config = PerformanceConfig::default();
    config.cache.encryption_keys = vec![EncryptionKey::new("2026-12", KEY)];
    config.cache.value_protection = protection;
    MultiLevelCache::builder(&config)
        .remote_tier(Arc::clone(tier) as Arc<dyn RemoteTier>)
        .build()
        .expect("valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_encrypted_in_redis_and_moved_or_planted_ones_are_misses() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let ads = RedisTier::builder(server.url())
        .namespace("ads")
        .build()
        .await
        .expect("builds");
    let billing = RedisTier::builder(server.url())
        .namespace("billing")
        .build()
        .await
        .expect("builds");
    let cache = sealed_cache(&ads, ValueProtection::Encrypt);
    cache
        .set(
            "card:1",
            "4242 4242 4242 4242".to_string(),
            Tier::Redis,
            None,
        )
        .await
        .expect("stored");
    cache
        .set(
            "card:2",
            "5555 5555 5555 4444".to_string(),
            Tier::Redis,
            None,
        )
        .await
        .expect("stored");

    let mut redis = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let raw: Vec<u8> = redis.get("ads:card:1").await.expect("read");
    assert!(
        !raw.windows(4).any(|w| w == b"4242"),
        "the number is not in Redis in the clear"
    );

    // Moved to another key, and to another namespace's key of the same name.
    let () = redis.set("ads:card:2", &raw).await.expect("written");
    let () = redis.set("billing:card:1", &raw).await.expect("written");
    // Planted without a seal.
    let () = redis
        .set("ads:card:3", b"\x02\x00 not a sealed value".as_slice())
        .await
        .expect("written");

    let reader = sealed_cache(&ads, ValueProtection::Encrypt);
    let other_namespace = sealed_cache(&billing, ValueProtection::Encrypt);
    for (cache, key) in [
        (&reader, "card:2"),
        (&reader, "card:3"),
        (&other_namespace, "card:1"),
    ] {
        assert_eq!(
            cache.get::<String>(key, Tier::Redis).await.expect("ok"),
            None,
            "{key} does not open"
        );
    }
    assert_eq!(reader.stats().remote.expect("remote").decode_errors, 2);
    assert_eq!(
        reader
            .get::<String>("card:1", Tier::Redis)
            .await
            .expect("ok")
            .as_deref()
            .map(String::as_str),
        Some("4242 4242 4242 4242")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_invalidation_drops_shared_values_on_every_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier = || RedisTier::builder(server.url()).namespace("leak").build();
    let (tier_a, tier_b) = (tier().await.expect("builds"), tier().await.expect("builds"));
    let a = sealed_cache(&tier_a, ValueProtection::Authenticate);
    let b = sealed_cache(&tier_b, ValueProtection::Authenticate);
    let subscribed = within(Duration::from_secs(5), async || {
        tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");
    a.set("ad:1", 1u32, Tier::Redis, None)
        .await
        .expect("stored");
    assert_eq!(
        b.get::<u32>("ad:1", Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&1),
        "B holds a local copy"
    );

    a.invalidate_for_security(Revocation::WrittenBefore(std::time::SystemTime::now()))
        .await
        .expect("revoked");
    let dropped = within(Duration::from_secs(2), async || {
        b.get::<u32>("ad:1", Tier::L2).await.expect("ok").is_none()
    })
    .await;
    assert!(dropped.is_some(), "B dropped its local copy");
    assert_eq!(b.get::<u32>("ad:1", Tier::Redis).await.expect("ok"), None);
}
