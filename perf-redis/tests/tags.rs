//! Tags across instances sharing a real Redis: invalidating a tag on one instance drops what
//! every instance wrote under it.

mod support;

use std::time::Duration;

use perf_core::Tier;
use perf_redis::RedisTier;
use support::{RedisServer, cache_over as cache, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidated_on_one_instance_drops_its_entries_on_every_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tier = || RedisTier::builder(server.url()).namespace("tags").build();
    let (tier_a, tier_b) = (tier().await.expect("builds"), tier().await.expect("builds"));
    let (a, b) = (cache(&tier_a), cache(&tier_b));
    let subscribed = within(Duration::from_secs(5), async || {
        tier_a.stats().backplane.subscribed && tier_b.stats().backplane.subscribed
    })
    .await;
    assert!(subscribed.is_some(), "both instances subscribed");

    let tags = ["ads", "campaign:3"];
    let key = a.tagged_key("ad:7", &tags).await;
    a.set(&key, 7u32, Tier::Redis, None).await.expect("stored");
    let same = within(Duration::from_secs(2), async || {
        b.tagged_key("ad:7", &tags).await == key
    })
    .await;
    assert!(same.is_some(), "B reads A's tag generations from Redis");
    assert_eq!(
        b.get::<u32>(&key, Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&7)
    );

    b.invalidate_tag("campaign:3").await.expect("invalidated");
    let dropped = within(Duration::from_secs(2), async || {
        let key = a.tagged_key("ad:7", &tags).await;
        a.get::<u32>(&key, Tier::Redis).await.expect("ok").is_none()
    })
    .await;
    assert!(
        dropped.is_some(),
        "A no longer reads the entry B's tag dropped"
    );
    let key_b = b.tagged_key("ad:7", &tags).await;
    assert_eq!(b.get::<u32>(&key_b, Tier::Redis).await.expect("ok"), None);
}
