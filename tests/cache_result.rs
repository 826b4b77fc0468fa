//! `#[cache_result]` as a user writes it: what is cached, under which key, and when.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use perf::{PerformanceOptimizer, cache_result};
use serde::{Deserialize, Serialize};

fn optimizer() -> PerformanceOptimizer {
    PerformanceOptimizer::builder().build().expect("valid")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ad {
    id: u64,
    title: String,
}

static FETCHES: AtomicUsize = AtomicUsize::new(0);

#[cache_result(ttl = 3600, cache_type = "l2", optimizer = optimizer, skip(optimizer))]
async fn fetch_ad(optimizer: &PerformanceOptimizer, id: u64) -> Result<Ad, String> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    if id == 0 {
        return Err("no such ad".into());
    }
    Ok(Ad {
        id,
        title: format!("ad {id}"),
    })
}

#[tokio::test]
async fn results_are_cached_per_argument_and_errors_are_not() {
    let optimizer = optimizer();
    let first = fetch_ad(&optimizer, 1).await;
    assert_eq!(
        first,
        Ok(Ad {
            id: 1,
            title: "ad 1".into()
        })
    );
    assert_eq!(fetch_ad(&optimizer, 1).await, first);
    assert_eq!(
        FETCHES.load(Ordering::SeqCst),
        1,
        "the second call was a hit"
    );
    fetch_ad(&optimizer, 2).await.expect("ok");
    assert_eq!(
        FETCHES.load(Ordering::SeqCst),
        2,
        "another argument, another entry"
    );
    assert!(fetch_ad(&optimizer, 0).await.is_err());
    assert!(fetch_ad(&optimizer, 0).await.is_err());
    assert_eq!(FETCHES.load(Ordering::SeqCst), 4, "errors are not cached");

    let stats = optimizer.cache().stats();
    assert_eq!(stats.l2.entries, Some(2), "stored down to L2");
}

static CONCURRENT: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_type = "l1", optimizer = optimizer, skip(optimizer))]
async fn popular(optimizer: Arc<PerformanceOptimizer>, id: u32) -> u32 {
    CONCURRENT.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id * 10
}

/// On paused time the body's sleep ends only once every task is idle: all 99 others have
/// joined its load by then.
#[tokio::test(start_paused = true)]
async fn concurrent_calls_run_the_body_once() {
    let optimizer = Arc::new(optimizer());
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(popular(Arc::clone(&optimizer), 7)))
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("no panic"), 70);
    }
    assert_eq!(CONCURRENT.load(Ordering::SeqCst), 1);
    assert_eq!(optimizer.cache().stats().loads.coalesced, 99);
}

static BLOCKING: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_type = "l2", optimizer = optimizer, skip(optimizer))]
fn slow_square(optimizer: &PerformanceOptimizer, n: u64) -> u64 {
    BLOCKING.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    n * n
}

/// The count holds in any interleaving (a late call hits the stored value); the body's sleep
/// only makes the calls likely to meet in flight, which perf-core's own tests make certain.
#[test]
fn concurrent_calls_of_a_sync_fn_run_the_body_once() {
    let optimizer = optimizer();
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    slow_square(&optimizer, 12)
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.join().expect("no panic"), 144);
        }
    });
    assert_eq!(BLOCKING.load(Ordering::SeqCst), 1);
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(key = "user:{user_id}", ttl = "30m", optimizer = optimizer)]
fn user_name(optimizer: &PerformanceOptimizer, user_id: u64, verbose: bool) -> Option<String> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    let _ = verbose;
    (user_id != 0).then(|| format!("user {user_id}"))
}

#[test]
fn sync_fns_with_a_key_template_and_options() {
    let optimizer = optimizer();
    assert_eq!(user_name(&optimizer, 5, false).as_deref(), Some("user 5"));
    assert_eq!(
        user_name(&optimizer, 5, true).as_deref(),
        Some("user 5"),
        "verbose is not in the key"
    );
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 1);
    let cached: Option<Arc<String>> = optimizer.cache().get_l1_local("user:5").expect("ok");
    assert_eq!(
        cached.as_deref().map(String::as_str),
        Some("user 5"),
        "stored under the template key"
    );
    assert_eq!(user_name(&optimizer, 0, false), None);
    assert_eq!(user_name(&optimizer, 0, false), None);
    assert_eq!(
        LOOKUPS.load(Ordering::SeqCst),
        3,
        "None is not cached by default"
    );
}

static NONE_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_none, cache_type = "l2", optimizer = optimizer, skip(optimizer))]
fn maybe(optimizer: &PerformanceOptimizer, id: u8) -> Option<u8> {
    NONE_LOOKUPS.fetch_add(1, Ordering::SeqCst);
    (id > 100).then_some(id)
}

static ERR_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_err, optimizer = optimizer, skip(optimizer))]
async fn failing(optimizer: &PerformanceOptimizer, id: u8) -> Result<u8, String> {
    ERR_LOOKUPS.fetch_add(1, Ordering::SeqCst);
    Err(format!("bad {id}"))
}

#[tokio::test]
async fn cache_none_and_cache_err_opt_in() {
    let optimizer = optimizer();
    assert_eq!(maybe(&optimizer, 1), None);
    assert_eq!(maybe(&optimizer, 1), None);
    assert_eq!(NONE_LOOKUPS.load(Ordering::SeqCst), 1, "None was cached");
    assert!(failing(&optimizer, 1).await.is_err());
    assert!(failing(&optimizer, 1).await.is_err());
    assert_eq!(ERR_LOOKUPS.load(Ordering::SeqCst), 1, "the Err was cached");
    assert_eq!(
        optimizer.cache().stats().l2.entries,
        Some(1),
        "maybe went to L2, failing to L1 only"
    );
}

struct Repository {
    loads: AtomicUsize,
}

impl Repository {
    #[cache_result(ttl = 60, optimizer = perf::global())]
    async fn load(&self, name: String) -> Vec<String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        vec![name.clone(), name]
    }
}

/// Another type in the same module with a cached method of the same name and arguments.
#[derive(Debug, Clone, PartialEq)]
struct Archive;

impl Archive {
    #[cache_result(ttl = 60, optimizer = perf::global())]
    async fn load(&self, name: String) -> Vec<String> {
        vec![format!("archived {name}")]
    }

    #[cache_result(ttl = 60, optimizer = perf::global())]
    fn count(&self, name: String) -> usize {
        name.len() * 10
    }

    /// An associated function that names `Self`: keyed by the type too.
    #[cache_result(ttl = 60, optimizer = perf::global())]
    fn named(name: String) -> Option<Self> {
        (!name.is_empty()).then_some(Archive)
    }
}

impl Repository {
    #[cache_result(ttl = 60, optimizer = perf::global())]
    fn count(&self, name: String) -> usize {
        name.len()
    }
}

#[tokio::test]
async fn methods_are_keyed_by_their_type_and_arguments_not_by_self() {
    let repository = Repository {
        loads: AtomicUsize::new(0),
    };
    assert_eq!(repository.load("a".into()).await, ["a", "a"]);
    assert_eq!(repository.load("a".into()).await, ["a", "a"]);
    assert_eq!(repository.loads.load(Ordering::SeqCst), 1);
    let key = perf::cache::function_key(
        concat!(module_path!(), "::load"),
        &(std::any::type_name::<Repository>(), &"a".to_string()),
    );
    assert!(
        perf::global()
            .cache()
            .get_l1_local::<Vec<String>>(&key)
            .expect("ok")
            .is_some(),
        "{key}"
    );
}

#[tokio::test]
async fn two_impls_in_one_module_never_share_a_memoized_result() {
    let repository = Repository {
        loads: AtomicUsize::new(0),
    };
    // Each warms its own entry first, then reads it again: neither sees the other's value.
    assert_eq!(repository.load("b".into()).await, ["b", "b"]);
    assert_eq!(Archive.load("b".into()).await, ["archived b"]);
    assert_eq!(repository.load("b".into()).await, ["b", "b"]);
    assert_eq!(Archive.load("b".into()).await, ["archived b"]);
    assert_eq!(repository.count("abc".into()), 3);
    assert_eq!(Archive.count("abc".into()), 30);
    assert_eq!(repository.count("abc".into()), 3);
    assert_eq!(Archive.count("abc".into()), 30);
    assert_eq!(Archive::named("x".into()), Some(Archive));
}

static SWITCHED: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_type = "l1", optimizer = optimizer, skip(optimizer))]
async fn switched(optimizer: &PerformanceOptimizer, id: u8) -> u8 {
    SWITCHED.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test]
async fn with_caching_off_every_call_runs_the_body() {
    let mut config = perf::PerformanceConfig::default();
    config.cache.enabled = false;
    let optimizer = PerformanceOptimizer::builder()
        .config(config.clone())
        .build()
        .expect("valid");
    for _ in 0..3 {
        assert_eq!(switched(&optimizer, 4).await, 4);
    }
    assert_eq!(SWITCHED.load(Ordering::SeqCst), 3, "no call was cached");
    assert_eq!(optimizer.cache().stats().l1.entries, Some(0));

    config.cache.enabled = true;
    optimizer.update_config(config).expect("a hot field");
    for _ in 0..3 {
        assert_eq!(switched(&optimizer, 4).await, 4);
    }
    assert_eq!(
        SWITCHED.load(Ordering::SeqCst),
        4,
        "cached again once switched on"
    );
}

/// An argument whose serialization fails for some values, as a non-UTF-8 `PathBuf`'s does.
#[derive(Clone, Copy)]
struct Fragile(u8);

impl Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 >= 100 {
            return Err(serde::ser::Error::custom("cannot be written"));
        }
        serializer.serialize_u8(self.0)
    }
}

/// Its `Display` fails in the same way, for a key template.
impl std::fmt::Display for Fragile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 100 {
            return Err(std::fmt::Error);
        }
        write!(f, "{}", self.0)
    }
}

static FRAGILE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_type = "l1", optimizer = optimizer, skip(optimizer))]
async fn fragile(optimizer: &PerformanceOptimizer, arg: Fragile) -> u8 {
    FRAGILE_CALLS.fetch_add(1, Ordering::SeqCst);
    arg.0
}

static TEMPLATED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(key = "fragile:{arg}", optimizer = optimizer)]
fn templated(optimizer: &PerformanceOptimizer, arg: Fragile) -> u8 {
    TEMPLATED_CALLS.fetch_add(1, Ordering::SeqCst);
    arg.0
}

#[tokio::test]
async fn arguments_that_cannot_be_keyed_run_uncached_and_never_share_a_result() {
    let optimizer = optimizer();
    for arg in [100, 101, 100, 101] {
        assert_eq!(
            fragile(&optimizer, Fragile(arg)).await,
            arg,
            "its own result"
        );
        assert_eq!(templated(&optimizer, Fragile(arg)), arg, "its own result");
    }
    assert_eq!(FRAGILE_CALLS.load(Ordering::SeqCst), 4, "every call ran");
    assert_eq!(TEMPLATED_CALLS.load(Ordering::SeqCst), 4, "every call ran");
    let l1 = optimizer.cache().stats().l1;
    assert_eq!(l1.entries, Some(0), "nothing stored");
    assert_eq!(l1.refused, 8, "each uncached call counted as refused");

    // Arguments that can be written are cached as usual.
    for _ in 0..2 {
        assert_eq!(fragile(&optimizer, Fragile(7)).await, 7);
        assert_eq!(templated(&optimizer, Fragile(7)), 7);
    }
    assert_eq!(FRAGILE_CALLS.load(Ordering::SeqCst), 5);
    assert_eq!(TEMPLATED_CALLS.load(Ordering::SeqCst), 5);
}

static CAMPAIGN_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(
    cache_type = "l2",
    tags = ["ads", "campaign:{campaign}"],
    optimizer = optimizer,
    skip(optimizer)
)]
async fn campaign_ad(optimizer: &PerformanceOptimizer, campaign: u32, slot: u8) -> String {
    let n = CAMPAIGN_LOADS.fetch_add(1, Ordering::SeqCst);
    format!("campaign {campaign} slot {slot} load {n}")
}

#[tokio::test]
async fn a_tag_drops_every_memoized_call_made_under_it() {
    let optimizer = optimizer();
    let first = campaign_ad(&optimizer, 3, 1).await;
    let other = campaign_ad(&optimizer, 4, 1).await;
    assert_eq!(campaign_ad(&optimizer, 3, 1).await, first, "cached");
    assert_eq!(CAMPAIGN_LOADS.load(Ordering::SeqCst), 2);

    optimizer
        .cache()
        .invalidate_tag("campaign:3")
        .await
        .expect("invalidated");
    let reloaded = campaign_ad(&optimizer, 3, 1).await;
    assert_ne!(reloaded, first, "campaign 3's call ran again");
    assert_eq!(
        campaign_ad(&optimizer, 4, 1).await,
        other,
        "campaign 4's did not"
    );

    optimizer
        .cache()
        .invalidate_tag("ads")
        .await
        .expect("invalidated");
    assert_ne!(
        campaign_ad(&optimizer, 4, 1).await,
        other,
        "a tag every call carries"
    );
    assert_eq!(CAMPAIGN_LOADS.load(Ordering::SeqCst), 4);

    // One call of a tagged function, by its arguments.
    let held = campaign_ad(&optimizer, 4, 2).await;
    assert_eq!(campaign_ad(&optimizer, 4, 2).await, held, "cached");
    let dropped = campaign_ad::invalidate_in(optimizer.cache(), 4, 2).await;
    assert_eq!(dropped.ok(), Some(true));
    assert_ne!(campaign_ad(&optimizer, 4, 2).await, held, "ran again");
    assert_eq!(CAMPAIGN_LOADS.load(Ordering::SeqCst), 6);
}

static PRICE_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(ttl = 60, cache_type = "l2")]
async fn price(ad: u64, region: String) -> u64 {
    PRICE_LOADS.fetch_add(1, Ordering::SeqCst);
    ad * 10 + region.len() as u64
}

#[cache_result(ttl = 60, key = "slot:{slot}", optimizer = optimizer, skip(optimizer))]
fn slot_name(optimizer: &PerformanceOptimizer, slot: u8, verbose: bool) -> String {
    let _ = verbose;
    format!("slot {slot}")
}

#[tokio::test]
async fn one_memoized_call_is_invalidated_by_its_arguments() {
    assert_eq!(price(1, "eu".into()).await, 12);
    assert_eq!(price(1, "eu".into()).await, 12);
    assert_eq!(price(2, "eu".into()).await, 22);
    assert_eq!(PRICE_LOADS.load(Ordering::SeqCst), 2);

    assert_eq!(price::invalidate(1, "eu".into()).await.ok(), Some(true));
    assert_eq!(
        price::invalidate(9, "us".into()).await.ok(),
        Some(false),
        "nothing held for it"
    );
    assert_eq!(price(1, "eu".into()).await, 12);
    assert_eq!(price(2, "eu".into()).await, 22);
    assert_eq!(
        PRICE_LOADS.load(Ordering::SeqCst),
        3,
        "only the invalidated call ran again"
    );

    // The key is the one `#[cache_result]` stores under.
    let key = price::key(1, "eu".into()).expect("encodable");
    let expected = perf::cache::function_key(
        concat!(module_path!(), "::price"),
        &(&1u64, &"eu".to_string()),
    );
    assert_eq!(key, expected);
    assert!(
        perf::global()
            .cache()
            .get::<u64>(&key, perf::Tier::L2)
            .await
            .expect("ok")
            .is_some()
    );

    // A key template: the companion takes the arguments the template names.
    let optimizer = optimizer();
    assert_eq!(slot_name(&optimizer, 3, true), "slot 3");
    assert_eq!(slot_name::key(3).as_deref(), Some("slot:3"));
    assert!(
        slot_name::invalidate_in(optimizer.cache(), 3)
            .await
            .expect("ok")
    );
}

static SECRETS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(cache_type = "l2", encrypt, optimizer = optimizer, skip(optimizer))]
async fn card_number(optimizer: &PerformanceOptimizer, user: u64) -> Result<String, perf::Error> {
    SECRETS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("4242 0000 0000 {user:04}"))
}

#[tokio::test]
async fn encrypted_results_need_a_key_ring() {
    let mut config = perf::PerformanceConfig::default();
    config.cache.encryption_keys = vec![perf::config::EncryptionKey::new(
        "k1",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )];
    config.cache.value_protection = perf::config::ValueProtection::Authenticate;
    let keyed = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid");
    let first = card_number(&keyed, 7).await.expect("loaded");
    assert_eq!(card_number(&keyed, 7).await.expect("hit"), first);
    assert_eq!(SECRETS.load(Ordering::SeqCst), 1, "cached");
    assert_eq!(keyed.cache().stats().l2.entries, Some(1));

    // Without keys the call still answers, from its body, and caches nothing.
    let plain = optimizer();
    assert_eq!(card_number(&plain, 7).await.expect("uncached"), first);
    assert_eq!(card_number(&plain, 7).await.expect("uncached"), first);
    assert_eq!(SECRETS.load(Ordering::SeqCst), 3, "ran each time");
    assert_eq!(plain.cache().stats().l2.entries, Some(0));
}
