//! Cache benchmarks, each against its rival in the same run, printing the ratios at the end.
//!
//! - L1 hit: `get` (polled in place, and awaited in an `async` loop as a service calls it)
//!   and `get_l1_local` of an `Arc`-held value with a 24-byte key, against raw
//!   `quick_cache::sync::Cache::get` and `moka::sync::Cache::get`, on 1 and on 2 threads: ~2 KiB
//!   ad records in a warm 100k-entry cache (memory-bound), and 256-byte values in a hot
//!   1k-entry one (CPU-bound). Besides criterion's figures, the contenders are measured in
//!   alternation (`interleaved`), the ratio to trust on a shared machine; the awaited `get`
//!   against quick_cache called in the same `async` loop, so that the loop's own cost (a
//!   future's state written to memory each time round) is not counted as the cache's.
//! - L2 hit: the same record decompressed and decoded (and copied back into L1), and a
//!   256-byte value, each plain, authenticated (HMAC-SHA256) and encrypted (AES-256-GCM)
//!   under `cache_encryption_keys`; prints what sealing adds.
//! - Equal memory: a Zipf(0.9) trace of 1M gets over 200k keys, L1 + L2 (L1 a tenth of the
//!   budget) against L1 alone given the same byte budget; prints both hit ratios.
//!
//! `cargo bench --bench cache`; `PERF_BENCH_QUICK=1` shortens measurement for a smoke run.
//! `CACHE_PROFILE=get_l1|get|awaited|quick_cache|awaited_quick_cache` runs only a loop of that
//! contender's hot-set hits for `CACHE_SECONDS` (default 10) on `CACHE_THREADS` (default 1),
//! for `perf record`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use common::{Interleaved, interleaved, median_ns, slowest_thread};
use criterion::Criterion;
use perf::{
    MultiLevelCache, PerformanceConfig, Tier,
    cache::SharedValue,
    config::{EncryptionKey, ValueProtection},
};
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::SliceRandom};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

// ----- a realistic ad record -----

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdRecord {
    id: u64,
    campaign_id: u64,
    advertiser_id: u64,
    status: String,
    title: String,
    description: String,
    landing_url: String,
    image_urls: Vec<String>,
    keywords: Vec<String>,
    countries: Vec<String>,
    languages: Vec<String>,
    bid_cpm: f64,
    daily_budget: f64,
    ctr: f64,
    cvr: f64,
    quality_score: f32,
    age_min: u8,
    age_max: u8,
    created_at: i64,
    updated_at: i64,
}

const WORDS: &[&str] = &[
    "premium",
    "running",
    "shoes",
    "free",
    "shipping",
    "discount",
    "summer",
    "sale",
    "new",
    "collection",
    "lightweight",
    "comfortable",
    "durable",
    "official",
    "store",
    "limited",
    "offer",
    "best",
    "price",
    "guarantee",
    "women",
    "men",
    "kids",
    "outdoor",
    "trail",
    "sport",
    "fitness",
    "training",
    "breathable",
    "waterproof",
    "jacket",
    "backpack",
    "travel",
    "hotel",
    "flight",
    "deal",
    "booking",
    "cheap",
    "luxury",
    "resort",
    "beach",
    "city",
    "weekend",
    "insurance",
    "quote",
    "compare",
    "save",
    "today",
    "online",
    "course",
    "learn",
    "skills",
    "certificate",
    "career",
    "software",
    "cloud",
    "platform",
    "team",
    "productivity",
    "trial",
    "days",
    "month",
    "plan",
    "pro",
    "business",
    "secure",
    "fast",
    "reliable",
    "support",
    "24/7",
    "organic",
    "coffee",
    "beans",
    "roasted",
    "delivery",
    "subscription",
    "fresh",
    "local",
    "the",
    "and",
    "for",
    "with",
    "your",
    "our",
    "from",
    "every",
    "more",
    "than",
    "only",
    "now",
];

fn words(rng: &mut SmallRng, n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    text
}

fn ad_record(id: u64) -> AdRecord {
    let mut rng = SmallRng::seed_from_u64(id);
    let campaign_id = rng.random_range(1..50_000);
    AdRecord {
        id,
        campaign_id,
        advertiser_id: rng.random_range(1..5_000),
        status: "active".into(),
        title: words(&mut rng, 8),
        description: words(&mut rng, 150),
        landing_url: format!(
            "https://shop.example.com/campaigns/{campaign_id}/landing?utm_source=ads&utm_medium=cpc&ad={id}"
        ),
        image_urls: (0..4)
            .map(|i| {
                format!("https://cdn.example.com/creatives/{campaign_id}/{id}/{i}_1200x628.jpg")
            })
            .collect(),
        keywords: (0..15).map(|_| words(&mut rng, 2)).collect(),
        countries: ["US", "DE", "FR", "GB", "ES"]
            .iter()
            .map(|c| c.to_string())
            .collect(),
        languages: vec!["en".into(), "de".into()],
        bid_cpm: rng.random_range(0.5..20.0),
        daily_budget: rng.random_range(50.0..5000.0),
        ctr: rng.random_range(0.001..0.08),
        cvr: rng.random_range(0.001..0.05),
        quality_score: rng.random_range(1.0..10.0),
        age_min: 18,
        age_max: 65,
        created_at: 1_700_000_000 + rng.random_range(0..10_000_000),
        updated_at: 1_710_000_000 + rng.random_range(0..10_000_000),
    }
}

/// Heap and inline bytes of a record, as L1 would hold it behind an `Arc`.
fn in_memory_bytes(r: &AdRecord) -> usize {
    let strings = |v: &Vec<String>| {
        v.capacity() * size_of::<String>() + v.iter().map(String::capacity).sum::<usize>()
    };
    16 + size_of::<AdRecord>()
        + r.status.capacity()
        + r.title.capacity()
        + r.description.capacity()
        + r.landing_url.capacity()
        + strings(&r.image_urls)
        + strings(&r.keywords)
        + strings(&r.countries)
        + strings(&r.languages)
}

fn key(id: u64) -> String {
    format!("ads:v1:record:{id:010}") // 24 bytes
}

// ----- helpers -----

fn quick() -> bool {
    std::env::var_os("PERF_BENCH_QUICK").is_some()
}

/// Polls a future that is ready at once (a cache hit that needs no remote tier). Inlined,
/// as an `.await` inlines the future's poll into the awaiting fn: out of line, `get`'s
/// 56-byte `Result` crossed this call through memory, which the `get_l1_local` arm's
/// `Option` does not (see `Get::poll` in `perf-core`).
#[inline(always)]
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local cache read never waits"),
    }
}

/// Time for each of `threads` threads to do `iters` lookups at once.
fn concurrent(
    threads: usize,
    iters: u64,
    keys: &[String],
    lookup: impl Fn(&str) + Sync,
) -> Duration {
    slowest_thread(threads, |thread, barrier| {
        let offset = thread * keys.len() / threads;
        barrier.wait();
        let start = Instant::now();
        for i in 0..iters as usize {
            lookup(&keys[(offset + i) % keys.len()]);
        }
        start.elapsed()
    })
}

// ----- benchmarks -----

/// A 256-byte value, for the hot set: small enough that a hit's cost is the caches' own work.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Small([u64; 32]);

fn small(id: u64) -> Small {
    Small(std::array::from_fn(|i| id ^ i as u64))
}

/// The three caches of an L1 benchmark, warm with the same values.
struct L1Caches<V> {
    ours: MultiLevelCache,
    raw: quick_cache::sync::Cache<String, Arc<V>>,
    moka: moka::sync::Cache<String, Arc<V>>,
    keys: Vec<String>,
}

fn l1_caches<V: SharedValue>(entries: u64, value: fn(u64) -> V) -> L1Caches<V> {
    // Headroom: quick_cache splits capacity across shards, which fill unevenly.
    let capacity = entries * 3 / 2 + 1000;
    let mut config = PerformanceConfig::default();
    config.cache.max_size = capacity;
    let ours = MultiLevelCache::new(&config).unwrap();
    let raw = quick_cache::sync::Cache::new(capacity as usize);
    let moka = moka::sync::Cache::new(capacity);
    let mut keys: Vec<String> = (0..entries).map(key).collect();
    // Each cache holds its own copy of each value, allocated side by side, so that no cache
    // gets a friendlier memory layout than the others.
    for (id, k) in keys.iter().enumerate() {
        let id = id as u64;
        ours.set_l1_local(k, value(id), None).unwrap();
        raw.insert(k.clone(), Arc::new(value(id)));
        moka.insert(k.clone(), Arc::new(value(id)));
    }
    moka.run_pending_tasks();
    keys.shuffle(&mut SmallRng::seed_from_u64(7));
    assert_eq!(
        ours.stats().l1.entries,
        Some(entries),
        "every value is resident"
    );
    L1Caches {
        ours,
        raw,
        moka,
        keys,
    }
}

/// An L1 hit of `entries` values made by `value`: 100k ad records (memory-bound: most of a
/// hit is cache misses), and 1k 256-byte values (everything in the CPU's caches: the CPU cost
/// of a hit).
fn l1_hit<V: SharedValue>(
    c: &mut Criterion,
    entries: u64,
    value: fn(u64) -> V,
    name: &str,
) -> Option<L1Caches<V>> {
    // Built on first use, so that a filtered run that skips these benchmarks skips this too.
    let built = OnceLock::new();
    let caches = || built.get_or_init(|| l1_caches(entries, value));
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("{name}_{threads}_thread"));
        group.bench_function("perf_get_l1", |b| {
            let L1Caches { ours, keys, .. } = caches();
            b.iter_custom(|iters| {
                concurrent(threads, iters, keys, |k| {
                    black_box(ours.get_l1_local::<V>(k).unwrap().unwrap());
                })
            })
        });
        group.bench_function("perf_get", |b| {
            let L1Caches { ours, keys, .. } = caches();
            b.iter_custom(|iters| {
                concurrent(threads, iters, keys, |k| {
                    black_box(ready(ours.get::<V>(k, Tier::L1)).unwrap().unwrap());
                })
            })
        });
        group.bench_function("quick_cache", |b| {
            let L1Caches { raw, keys, .. } = caches();
            b.iter_custom(|iters| {
                concurrent(threads, iters, keys, |k| {
                    black_box(raw.get(k).unwrap());
                })
            })
        });
        group.bench_function("moka", |b| {
            let L1Caches { moka, keys, .. } = caches();
            b.iter_custom(|iters| {
                concurrent(threads, iters, keys, |k| {
                    black_box(moka.get(k).unwrap());
                })
            })
        });
        group.finish();
    }
    built.into_inner()
}

/// How shared values are protected in an L2 arm: not at all, authenticated, encrypted.
const PROTECTIONS: [(&str, Option<ValueProtection>); 3] = [
    ("perf_get", None),
    (
        "perf_get_authenticated",
        Some(ValueProtection::Authenticate),
    ),
    ("perf_get_encrypted", Some(ValueProtection::Encrypt)),
];

/// 10k records in L2 behind a tiny L1, so that every read of a round misses L1 and decodes
/// from L2 (and, with a key ring, verifies or decrypts first).
fn l2_cache<V: SharedValue>(
    protection: Option<ValueProtection>,
    value: fn(u64) -> V,
) -> (MultiLevelCache, Vec<String>) {
    let mut config = PerformanceConfig::default();
    config.cache.max_size = 16;
    if let Some(protection) = protection {
        config.cache.encryption_keys = vec![EncryptionKey::new(
            "bench",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )];
        config.cache.value_protection = protection;
    }
    let cache = MultiLevelCache::new(&config).unwrap();
    let keys: Vec<String> = (0..10_000).map(key).collect();
    for (id, k) in keys.iter().enumerate() {
        ready(cache.set(k, value(id as u64), Tier::L2, None)).unwrap();
    }
    (cache, keys)
}

/// L2 hits of ~2 KiB ad records (compressed) and of 256-byte values (stored as they are),
/// plain, authenticated and encrypted.
fn l2_hit(c: &mut Criterion) {
    l2_hit_of(c, "l2_hit", ad_record);
    l2_hit_of(c, "l2_hit_small", small);
}

fn l2_hit_of<V: SharedValue>(c: &mut Criterion, name: &str, value: fn(u64) -> V) {
    let mut group = c.benchmark_group(name);
    for (arm, protection) in PROTECTIONS {
        let state = OnceLock::new();
        group.bench_function(arm, |b| {
            let (cache, keys) = state.get_or_init(|| l2_cache(protection, value));
            let mut i = 0;
            b.iter(|| {
                i = (i + 7919) % keys.len();
                black_box(ready(cache.get::<V>(&keys[i], Tier::L2)).unwrap().unwrap())
            });
        });
        if let Some((cache, _)) = state.get() {
            let stats = cache.stats();
            assert!(
                stats.l2.hits >= 20 * stats.l1.hits,
                "reads came from L2: {stats:?}"
            );
        }
    }
    group.finish();
}

/// What sealing adds to an L2 hit, measured with the arms in alternation round after round
/// (`common::interleaved`): the median over rounds of each arm's time per hit over the plain
/// arm's, for the record type `value` makes.
fn interleaved_sealing<V: SharedValue>(value: fn(u64) -> V) -> [f64; 2] {
    let caches = PROTECTIONS.map(|(_, protection)| l2_cache(protection, value));
    let gets = if quick() { 2_000 } else { 10_000 };
    let mut i = 0;
    let rounds = if quick() { 9 } else { 21 };
    let measured = interleaved(caches.len(), rounds, |arm, _| {
        let (cache, keys) = &caches[arm];
        let start = Instant::now();
        for _ in 0..gets {
            i = (i + 7919) % keys.len();
            black_box(ready(cache.get::<V>(&keys[i], Tier::L2)).unwrap().unwrap());
        }
        start.elapsed().as_nanos() as f64 / gets as f64
    });
    [measured.ratio(1, 0), measured.ratio(2, 0)]
}

/// Lookups awaited in an `async` loop, as a service makes them: each thread on a
/// current-thread runtime of its own. Both `get` and the rival run in this loop, so that
/// their ratio is the caches' and not the loop's.
fn awaited(
    threads: usize,
    iters: u64,
    keys: &[String],
    lookup: impl AsyncFn(&str) + Sync,
) -> Duration {
    slowest_thread(threads, |thread, barrier| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let offset = thread * keys.len() / threads;
        barrier.wait();
        runtime.block_on(async {
            let start = Instant::now();
            for i in 0..iters as usize {
                lookup(&keys[(offset + i) % keys.len()]).await;
            }
            start.elapsed()
        })
    })
}

/// `get` awaited in an `async` loop ([`awaited`]).
fn awaited_gets<V: SharedValue>(
    threads: usize,
    iters: u64,
    keys: &[String],
    cache: &MultiLevelCache,
) -> Duration {
    awaited(threads, iters, keys, async |key| {
        black_box(cache.get::<V>(key, Tier::L1).await.unwrap().unwrap());
    })
}

/// Raw quick_cache in the same `async` loop ([`awaited`]).
fn awaited_quick_cache<V: Send + Sync>(
    threads: usize,
    iters: u64,
    keys: &[String],
    raw: &quick_cache::sync::Cache<String, Arc<V>>,
) -> Duration {
    awaited(threads, iters, keys, async |key| {
        black_box(raw.get(key).unwrap());
    })
}

/// The contenders' per-lookup times in alternation round after round (`common::interleaved`):
/// raw quick_cache, perf `get_l1_local`, perf `get` polled in place, moka, perf `get` awaited,
/// raw quick_cache in the same `async` loop.
fn interleaved_hits<V: SharedValue>(caches: &L1Caches<V>, threads: usize) -> Interleaved {
    let L1Caches {
        ours,
        raw,
        moka,
        keys,
    } = caches;
    let lookups = 100_000;
    interleaved(6, 31, |arm, round| {
        let start = round * 7919;
        let keys = &keys[start % keys.len()..];
        let elapsed = match arm {
            0 => concurrent(threads, lookups, keys, |k| {
                black_box(raw.get(k).unwrap());
            }),
            1 => concurrent(threads, lookups, keys, |k| {
                black_box(ours.get_l1_local::<V>(k).unwrap().unwrap());
            }),
            2 => concurrent(threads, lookups, keys, |k| {
                black_box(ready(ours.get::<V>(k, Tier::L1)).unwrap().unwrap());
            }),
            3 => concurrent(threads, lookups, keys, |k| {
                black_box(moka.get(k).unwrap());
            }),
            4 => awaited_gets::<V>(threads, lookups, keys, ours),
            _ => awaited_quick_cache(threads, lookups, keys, raw),
        };
        elapsed.as_nanos() as f64 / lookups as f64
    })
}

fn print_interleaved<V: SharedValue>(name: &str, caches: &L1Caches<V>) {
    for threads in [1, 2] {
        let hits = interleaved_hits(caches, threads);
        let [raw, get_l1, get, moka, awaited, raw_awaited] =
            [0, 1, 2, 3, 4, 5].map(|arm| hits.median(arm));
        println!(
            "{name}, {threads} thread(s), interleaved: perf get_l1 {get_l1:.1} ns, perf get \
             {get:.1} ns (awaited in a loop {awaited:.1} ns), quick_cache {raw:.1} ns \
             (awaited in the same loop {raw_awaited:.1} ns), moka {moka:.1} ns | medians of \
             per-round ratios: get_l1/quick_cache {:.2}x, get/quick_cache {:.2}x, awaited \
             get/quick_cache in the same loop {:.2}x (against the plain loop's {:.2}x), \
             get/moka {:.2}x",
            hits.ratio(1, 0),
            hits.ratio(2, 0),
            hits.ratio(4, 5),
            hits.ratio(4, 0),
            hits.ratio(2, 3),
        );
    }
}

/// Sizes of one record: in memory (L1), as MessagePack, as L2 stores it by default, and as
/// it stores it with `zstd_compress_literals`.
fn record_sizes() -> (usize, usize, usize, usize) {
    let record = ad_record(1);
    let stored = |compress_literals| {
        let mut config = PerformanceConfig::default();
        config.cache.zstd_compress_literals = compress_literals;
        MultiLevelCache::new(&config)
            .unwrap()
            .encoded_len(&record)
            .unwrap()
    };
    let msgpack = rmp_serde::to_vec(&record).unwrap().len();
    (
        in_memory_bytes(&record),
        msgpack,
        stored(false),
        stored(true),
    )
}

/// Hit ratio of a Zipf(0.9) trace; a miss loads the record and stores it at `tier`.
fn zipf_hit_ratio(cache: &MultiLevelCache, tier: Tier, gets: usize, keys: u64) -> f64 {
    let zipf = Zipf::new(keys as f64, 0.9).unwrap();
    let mut rng = SmallRng::seed_from_u64(42);
    let mut hits = 0usize;
    for _ in 0..gets {
        let id = zipf.sample(&mut rng) as u64;
        let k = key(id);
        let found = ready(cache.get::<AdRecord>(&k, tier)).unwrap();
        if found.is_some() {
            hits += 1;
        } else {
            ready(cache.set(&k, ad_record(id), tier, None)).unwrap();
        }
    }
    hits as f64 / gets as f64
}

fn equal_memory() -> (f64, f64, u64) {
    let (gets, keys) = if quick() {
        (200_000, 40_000)
    } else {
        (1_000_000, 200_000)
    };
    let (memory, ..) = record_sizes();
    // Per-entry bookkeeping beside the value: the key and quick_cache's slot.
    let l1_entry = memory + 24 + 24 + 64;
    let budget = (keys as usize / 10 * l1_entry) as u64;
    let mut alone_config = PerformanceConfig::default();
    alone_config.cache.max_size = budget / l1_entry as u64;
    let l1_alone = MultiLevelCache::new(&alone_config).unwrap();
    let mut two_tier_config = PerformanceConfig::default();
    two_tier_config.cache.max_size = budget / 10 / l1_entry as u64;
    two_tier_config.cache.l2_max_bytes = budget - budget / 10;
    let two_tier = MultiLevelCache::new(&two_tier_config).unwrap();
    let alone = zipf_hit_ratio(&l1_alone, Tier::L1, gets, keys);
    let both = zipf_hit_ratio(&two_tier, Tier::L2, gets, keys);
    (alone, both, budget)
}

/// A loop of one contender's hits on the hot set, for `perf record` (`CACHE_PROFILE`).
fn profile(contender: &str) {
    const PASS: u64 = 100_000;
    let seconds: u64 = std::env::var("CACHE_SECONDS").map_or(10, |s| s.parse().unwrap());
    let threads: usize = std::env::var("CACHE_THREADS").map_or(1, |s| s.parse().unwrap());
    let caches = l1_caches(1_000, small);
    let L1Caches {
        ours, raw, keys, ..
    } = &caches;
    let (mut measured, mut lookups) = (Duration::ZERO, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        measured += match contender {
            "get_l1" => concurrent(threads, PASS, keys, |k| {
                black_box(ours.get_l1_local::<Small>(k).unwrap().unwrap());
            }),
            "get" => concurrent(threads, PASS, keys, |k| {
                black_box(ready(ours.get::<Small>(k, Tier::L1)).unwrap().unwrap());
            }),
            "awaited" => awaited_gets::<Small>(threads, PASS, keys, ours),
            "quick_cache" => concurrent(threads, PASS, keys, |k| {
                black_box(raw.get(k).unwrap());
            }),
            "awaited_quick_cache" => awaited_quick_cache(threads, PASS, keys, raw),
            other => panic!(
                "CACHE_PROFILE={other}: get_l1, get, awaited, quick_cache or awaited_quick_cache"
            ),
        };
        lookups += PASS;
    }
    // The passes' own times: thread and runtime start-up left out.
    println!(
        "{contender}: {:.1} ns a hit",
        measured.as_nanos() as f64 / lookups as f64
    );
}

fn main() {
    common::run_starts();
    if let Ok(contender) = std::env::var("CACHE_PROFILE") {
        return profile(&contender);
    }
    let mut c = Criterion::default().configure_from_args();
    c = if quick() {
        c.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(20)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(50)
    };
    let cold = l1_hit(&mut c, 100_000, ad_record, "l1_hit");
    let hot = l1_hit(&mut c, 1_000, small, "l1_hit_hot");
    l2_hit(&mut c);
    c.final_summary();

    println!("\n== ratios (medians) ==");
    for (name, threads) in [
        ("l1_hit", 1),
        ("l1_hit", 2),
        ("l1_hit_hot", 1),
        ("l1_hit_hot", 2),
    ] {
        let group = format!("{name}_{threads}_thread");
        let m = |b: &str| median_ns(&group, b);
        if let (Some(get_l1), Some(get), Some(raw), Some(moka)) =
            (m("perf_get_l1"), m("perf_get"), m("quick_cache"), m("moka"))
        {
            println!(
                "{name}, {threads} thread(s): perf get_l1 {get_l1:.1} ns, perf get {get:.1} ns, \
                 quick_cache {raw:.1} ns, moka {moka:.1} ns | get_l1/quick_cache {:.2}x, \
                 get/quick_cache {:.2}x, get/moka {:.2}x",
                get_l1 / raw,
                get / raw,
                get / moka,
            );
        }
    }
    if let Some(caches) = &cold {
        print_interleaved("l1_hit", caches);
    }
    if let Some(caches) = &hot {
        print_interleaved("l1_hit_hot", caches);
    }
    if let Some(l2) = median_ns("l2_hit", "perf_get") {
        println!("L2 hit: {:.2} us (target <= 10 us)", l2 / 1000.0);
    }
    for (group, [mac, aead]) in [
        ("l2_hit", interleaved_sealing(ad_record)),
        ("l2_hit_small", interleaved_sealing(small)),
    ] {
        println!(
            "{group}, interleaved: authenticated {mac:.2}x, encrypted {aead:.2}x the plain hit"
        );
    }
    for group in ["l2_hit", "l2_hit_small"] {
        let m = |arm: &str| median_ns(group, arm);
        if let (Some(plain), Some(mac), Some(aead)) = (
            m("perf_get"),
            m("perf_get_authenticated"),
            m("perf_get_encrypted"),
        ) {
            println!(
                "{group}: plain {plain:.0} ns, authenticated {mac:.0} ns ({:.2}x), \
                 encrypted {aead:.0} ns ({:.2}x; target <= 1.25x on the 2 KiB record)",
                mac / plain,
                aead / plain,
            );
        }
    }
    let (memory, msgpack, stored, stored_literals) = record_sizes();
    println!(
        "ad record: {memory} B in memory (L1), {msgpack} B MessagePack, {stored} B stored in L2 \
         (zstd, header included): compression {:.2}x over MessagePack, {:.2}x over memory; \
         {stored_literals} B ({:.2}x, {:.2}x) with zstd_compress_literals",
        msgpack as f64 / stored as f64,
        memory as f64 / stored as f64,
        msgpack as f64 / stored_literals as f64,
        memory as f64 / stored_literals as f64,
    );
    if std::env::var_os("PERF_BENCH_SKIP_TRACE").is_some() {
        return;
    }
    let (alone, both, budget) = equal_memory();
    println!(
        "equal memory ({:.1} MiB), Zipf(0.9): L1 alone hit ratio {:.3}, L1+L2 hit ratio {:.3} ({:+.1} points)",
        budget as f64 / (1 << 20) as f64,
        alone,
        both,
        (both - alone) * 100.0,
    );
}
