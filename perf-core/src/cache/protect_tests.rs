//! Sealed values through the cache: what another writer of the shared tier can and cannot
//! make an instance serve, key rotation, and security invalidation.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime},
};

use super::tests::{MemoryRemote, TestError, config};
use super::*;
use crate::config::{EncryptionKey, ValueProtection};

const NEW: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OLD: &str = "HxobHBscGxwbHBscGxwbHBscGxwbHBscGxwbHBscGxw=";

fn ring_config(keys: &[(&str, &str)], protection: ValueProtection) -> PerformanceConfig {
    let mut config = config();
    config.cache.encryption_keys = keys
        .iter()
        .map(|(id, key)| EncryptionKey::new(*id, *key))
        .collect();
    config.cache.value_protection = protection;
    config
}

fn instance(config: &PerformanceConfig, remote: &Arc<MemoryRemote>) -> MultiLevelCache {
    MultiLevelCache::builder(config)
        .remote_tier(Arc::clone(remote) as Arc<dyn RemoteTier>)
        .build()
        .expect("valid")
}

fn stored(remote: &MemoryRemote, key: &str) -> Option<Vec<u8>> {
    remote.map.lock().get(key).map(|(bytes, _)| bytes.clone())
}

fn remote_stats(cache: &MultiLevelCache) -> TierStats {
    cache.stats().remote.expect("a remote tier")
}

#[tokio::test]
async fn a_value_copied_to_another_key_is_a_counted_miss_and_deleted() {
    for protection in [ValueProtection::Encrypt, ValueProtection::Authenticate] {
        let remote = Arc::new(MemoryRemote::default());
        let config = ring_config(&[("k1", NEW)], protection);
        let writer = instance(&config, &remote);
        writer
            .set("price:cheap", 1u64, Tier::Redis, None)
            .await
            .expect("stored");
        writer
            .set("price:dear", 900u64, Tier::Redis, None)
            .await
            .expect("stored");
        // Someone with write access to Redis, but no key, moves the cheap price over the dear.
        remote.put(
            "price:dear",
            stored(&remote, "price:cheap").expect("written"),
        );

        let reader = instance(&config, &remote);
        assert_eq!(
            reader
                .get::<u64>("price:dear", Tier::Redis)
                .await
                .expect("ok"),
            None,
            "{protection:?}: a moved value does not open"
        );
        assert_eq!(remote_stats(&reader).decode_errors, 1);
        assert_eq!(stored(&remote, "price:dear"), None, "deleted for a reload");
        assert_eq!(
            reader
                .get::<u64>("price:cheap", Tier::Redis)
                .await
                .expect("ok")
                .as_deref(),
            Some(&1)
        );
    }
}

#[tokio::test]
async fn unsealed_and_garbage_values_are_misses_for_a_cache_with_keys() {
    let remote = Arc::new(MemoryRemote::default());
    let plain = instance(&config(), &remote);
    plain
        .set("ad", "planted".to_string(), Tier::Redis, None)
        .await
        .expect("stored");
    remote.put("junk", vec![3, 7, 0, 0, 1]);
    let sealed = instance(
        &ring_config(&[("k1", NEW)], ValueProtection::Encrypt),
        &remote,
    );
    let loads = AtomicUsize::new(0);
    let value = sealed
        .get_or_load("ad", Tier::Redis, None, || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TestError>("from the source".to_string())
        })
        .await
        .expect("loaded");
    assert_eq!(value.as_str(), "from the source");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the planted value was not served"
    );
    assert_eq!(
        sealed.get::<String>("junk", Tier::Redis).await.expect("ok"),
        None
    );
    assert_eq!(remote_stats(&sealed).decode_errors, 2);
    // The instance without keys cannot open what the sealed one wrote: a miss, left alone.
    plain.clear(Tier::L1).await.expect("cleared");
    plain.clear(Tier::L2).await.expect("cleared");
    assert_eq!(
        plain.get::<String>("ad", Tier::Redis).await.expect("ok"),
        None
    );
    assert!(
        stored(&remote, "ad").is_some(),
        "left for instances with the key"
    );
}

#[tokio::test]
async fn rotation_old_keys_open_and_local_copies_take_the_new_key() {
    let remote = Arc::new(MemoryRemote::default());
    let before = instance(
        &ring_config(&[("old", OLD)], ValueProtection::Encrypt),
        &remote,
    );
    before
        .set("ad", 7u64, Tier::Redis, None)
        .await
        .expect("stored");

    let rotated = instance(
        &ring_config(&[("new", NEW), ("old", OLD)], ValueProtection::Encrypt),
        &remote,
    );
    assert_eq!(
        rotated
            .get::<u64>("ad", Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&7)
    );
    let local = rotated.engine.l2.get("ad").expect("promoted to L2");
    assert!(
        codec::Codec::written_before_or_under(&local.bytes, None, Some("new")),
        "the L2 copy is sealed under the current key"
    );
    assert!(codec::Codec::written_before_or_under(
        &stored(&remote, "ad").expect("still there"),
        None,
        Some("old")
    ));

    // Once the old key is gone from the ring, its values are misses.
    let retired = instance(
        &ring_config(&[("new", NEW)], ValueProtection::Encrypt),
        &remote,
    );
    assert_eq!(
        retired.get::<u64>("ad", Tier::Redis).await.expect("ok"),
        None
    );
    assert_eq!(remote_stats(&retired).decode_errors, 1);
}

#[tokio::test]
async fn encryption_asked_for_without_keys_fails_and_stores_nothing() {
    let remote = Arc::new(MemoryRemote::default());
    let cache = instance(&config(), &remote);
    let options = LoadOptions::new(Tier::Redis).encrypt();
    let err = cache
        .set_with("secret", 1u64, options)
        .await
        .expect_err("no key");
    assert!(matches!(err, Error::NoEncryptionKeys), "{err}");
    assert_eq!(
        cache.get::<u64>("secret", Tier::L1).await.expect("ok"),
        None
    );
    assert_eq!(stored(&remote, "secret"), None);

    // With keys, an authenticating cache encrypts the calls that ask.
    let keyed = instance(
        &ring_config(&[("k1", NEW)], ValueProtection::Authenticate),
        &remote,
    );
    keyed
        .set_with("secret", "card 4242".to_string(), options)
        .await
        .expect("stored");
    keyed
        .set("public", "card 4242".to_string(), Tier::Redis, None)
        .await
        .expect("stored");
    let readable = |key| {
        let bytes = stored(&remote, key).expect("written");
        bytes.windows(9).any(|w| w == b"card 4242")
    };
    assert!(!readable("secret"));
    assert!(readable("public"), "authenticated only");
}

#[tokio::test]
async fn security_invalidation_by_write_time_drops_every_tier_and_refuses_stragglers() {
    let remote = Arc::new(MemoryRemote::default());
    let config = ring_config(&[("k1", NEW)], ValueProtection::Encrypt);
    let cache = instance(&config, &remote);
    cache
        .set("a", 1u64, Tier::Redis, None)
        .await
        .expect("stored");
    cache
        .set("local", 2u64, Tier::L2, None)
        .await
        .expect("stored");
    let straggler = stored(&remote, "a").expect("written");

    // Write times are in milliseconds: the moment comes strictly after the writes'.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let moment = SystemTime::now();
    cache
        .invalidate_for_security(Revocation::WrittenBefore(moment))
        .await
        .expect("revoked");
    assert_eq!(cache.get::<u64>("a", Tier::Redis).await.expect("ok"), None);
    assert_eq!(cache.get::<u64>("local", Tier::L2).await.expect("ok"), None);
    assert_eq!(stored(&remote, "a"), None, "the remote tier is cleared");

    // A copy written before the moment, put back by an instance that had not heard: refused.
    remote.put("a", straggler);
    assert_eq!(cache.get::<u64>("a", Tier::Redis).await.expect("ok"), None);
    // Values written afterwards are served.
    tokio::time::sleep(Duration::from_millis(2)).await;
    cache
        .set("b", 3u64, Tier::Redis, None)
        .await
        .expect("stored");
    cache.clear(Tier::L1).await.expect("cleared");
    cache.clear(Tier::L2).await.expect("cleared");
    assert_eq!(
        cache
            .get::<u64>("b", Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&3)
    );
}

#[tokio::test]
async fn security_invalidation_by_key_id_refuses_only_that_key() {
    let remote = Arc::new(MemoryRemote::default());
    let before = instance(
        &ring_config(&[("old", OLD)], ValueProtection::Encrypt),
        &remote,
    );
    before
        .set("a", 1u64, Tier::Redis, None)
        .await
        .expect("stored");
    let under_old = stored(&remote, "a").expect("written");

    let rotated = instance(
        &ring_config(&[("new", NEW), ("old", OLD)], ValueProtection::Encrypt),
        &remote,
    );
    let err = rotated
        .invalidate_for_security(Revocation::KeyId("new".into()))
        .await
        .expect_err("the current key");
    assert!(err.to_string().contains("put a new key first"), "{err}");

    rotated
        .set("b", 2u64, Tier::Redis, None)
        .await
        .expect("stored");
    rotated
        .invalidate_for_security(Revocation::KeyId("old".into()))
        .await
        .expect("revoked");
    remote.put("a", under_old);
    assert_eq!(
        rotated.get::<u64>("a", Tier::Redis).await.expect("ok"),
        None
    );
    rotated
        .set("b", 2u64, Tier::Redis, None)
        .await
        .expect("stored");
    rotated.clear(Tier::L2).await.expect("cleared");
    rotated.clear(Tier::L1).await.expect("cleared");
    assert_eq!(
        rotated
            .get::<u64>("b", Tier::Redis)
            .await
            .expect("ok")
            .as_deref(),
        Some(&2),
        "the current key's values are served"
    );
}

#[test]
fn bad_key_rings_are_refused_naming_the_field_and_keys_stay_out_of_debug() {
    for (keys, reason) in [
        (vec![("k1", "not base64!")], "not base64"),
        (vec![("k1", "AAAA")], "must be 32"),
        (vec![("k1", NEW), ("k1", OLD)], "used twice"),
        (vec![("", NEW)], "must be 1 to 32"),
        (vec![("with space", NEW)], "must be 1 to 32"),
    ] {
        let err = MultiLevelCache::new(&ring_config(&keys, ValueProtection::Encrypt))
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("cache_encryption_keys") && text.contains(reason),
            "{text}"
        );
        assert!(!text.contains(NEW), "{text}");
    }
    let debug = format!(
        "{:?}",
        ring_config(&[("k1", NEW)], ValueProtection::Encrypt)
    );
    assert!(debug.contains("k1") && !debug.contains(NEW), "{debug}");
}
