//! The cache when its source fails, against moka in the same run, printing the ratios.
//!
//! - Failing-loader stampede: 1,000 tasks on a two-worker runtime miss one cold key at once;
//!   the loader waits 1 ms and fails. perf's `get_or_load` against moka's `future::Cache::
//!   try_get_with`: time for all 1,000 to get their error, and loader calls per stampede
//!   (both should be 1). Swept over 100 and 1,000 callers, and over 1 and 100 keys.
//! - The hit path with failure protection on: `get` and a `#[cache_result]` hit on entries
//!   written with fail-safe, refresh-ahead and jitter, against the same reads of entries
//!   written without (target: within 5%), so the stale bookkeeping is seen to stay off it.
//!
//! `cargo bench --bench failures`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Interleaved, interleaved, median_ns};
use criterion::Criterion;
use perf::{MultiLevelCache, PerformanceConfig, Tier, cache::LoadOptions, cache_result};

#[derive(Debug, Clone)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database down")
    }
}

impl From<perf::Error> for DbError {
    fn from(_: perf::Error) -> Self {
        DbError
    }
}

/// A database that fails after 1 ms, counting its calls.
async fn failing_source(calls: &AtomicUsize) -> Result<u64, DbError> {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1)).await;
    Err(DbError)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

static STAMPEDE: AtomicU64 = AtomicU64::new(0);

/// `callers` tasks over `keys` cold keys, all at once; returns when every one has its error.
async fn stampede_perf(cache: &MultiLevelCache, calls: &Arc<AtomicUsize>, callers: u64, keys: u64) {
    let round = STAMPEDE.fetch_add(1, Ordering::Relaxed);
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (cache, calls) = (cache.clone(), Arc::clone(calls));
            tokio::spawn(async move {
                let key = format!("cold:{round}:{}", i % keys);
                let result = cache
                    .get_or_load(&key, Tier::L1, None, || failing_source(&calls))
                    .await;
                assert!(result.is_err());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn stampede_moka(
    cache: &moka::future::Cache<String, u64>,
    calls: &Arc<AtomicUsize>,
    callers: u64,
    keys: u64,
) {
    let round = STAMPEDE.fetch_add(1, Ordering::Relaxed);
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (cache, calls) = (cache.clone(), Arc::clone(calls));
            tokio::spawn(async move {
                let key = format!("cold:{round}:{}", i % keys);
                let result = cache.try_get_with(key, failing_source(&calls)).await;
                assert!(result.is_err());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

const HIT_KEYS: u64 = 1000;

fn value(id: u64) -> String {
    format!("campaign {id:>12} creative banner-728x90")
}

#[cache_result(ttl = 600, cache_type = "l1")]
async fn plain(id: u64) -> String {
    value(id)
}

#[cache_result(
    ttl = 600,
    cache_type = "l1",
    fail_safe = "1h",
    refresh_ahead = 0.8,
    jitter = 0.1
)]
async fn protected(id: u64) -> String {
    value(id)
}

/// The two contenders' times per call, measured in alternation over 41 rounds of a random
/// order of the keys (`measure(arm, order)`: arm 0 the plain entries, 1 the protected ones).
fn plain_and_protected(mut measure: impl FnMut(usize, &[u64]) -> Duration) -> Interleaved {
    use rand::{SeedableRng, seq::SliceRandom};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut order: Vec<u64> = (0..HIT_KEYS).cycle().take(200_000).collect();
    order.shuffle(&mut rng);
    interleaved(2, 41, |arm, _| {
        measure(arm, &order).as_nanos() as f64 / order.len() as f64
    })
}

fn main() {
    common::run_starts();
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let rt = runtime();
    let mut config = PerformanceConfig::default();
    config.cache.max_size = 1_000_000;
    let cache = MultiLevelCache::new(&config).unwrap();
    let moka_cache: moka::future::Cache<String, u64> = moka::future::Cache::new(1_000_000);
    let sweep = [(100, 1), (1000, 1), (1000, 100)];
    let mut calls_per_stampede = Vec::new();
    for (callers, keys) in sweep {
        let mut group = c.benchmark_group(format!("stampede_{callers}_callers_{keys}_keys"));
        let (ours_calls, moka_calls) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (ours_runs, moka_runs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        group.bench_function("perf", |b| {
            b.iter_custom(|iters| {
                ours_runs.fetch_add(iters, Ordering::Relaxed);
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        stampede_perf(&cache, &ours_calls, callers, keys).await;
                    }
                });
                start.elapsed()
            })
        });
        group.bench_function("moka", |b| {
            b.iter_custom(|iters| {
                moka_runs.fetch_add(iters, Ordering::Relaxed);
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        stampede_moka(&moka_cache, &moka_calls, callers, keys).await;
                    }
                });
                start.elapsed()
            })
        });
        group.finish();
        let per = |calls: &AtomicUsize, runs: &AtomicU64| {
            calls.load(Ordering::Relaxed) as f64 / runs.load(Ordering::Relaxed).max(1) as f64
        };
        calls_per_stampede.push((
            callers,
            keys,
            per(&ours_calls, &ours_runs),
            per(&moka_calls, &moka_runs),
        ));
    }

    // Hits: the same reads of entries written with and without failure protection.
    let protected_cache = MultiLevelCache::new(&config).unwrap();
    let options = LoadOptions::new(Tier::L1)
        .ttl(Duration::from_secs(600))
        .fail_safe(Duration::from_secs(3600))
        .eager_refresh(0.8)
        .jitter(0.1);
    rt.block_on(async {
        for id in 0..HIT_KEYS {
            let key = format!("ad:{id}");
            cache
                .set(&key, value(id), Tier::L1, Some(Duration::from_secs(600)))
                .await
                .unwrap();
            protected_cache
                .get_or_load_with(&key, &options, || async { Ok::<_, DbError>(value(id)) })
                .await
                .unwrap();
            plain(id).await;
            protected(id).await;
        }
    });
    let keys: Vec<String> = (0..HIT_KEYS).map(|id| format!("ad:{id}")).collect();
    let mut group = c.benchmark_group("get_hit_1000_keys");
    for (name, target) in [("plain", &cache), ("fail_safe", &protected_cache)] {
        group.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7) % keys.len();
                black_box(target.get_local::<String>(&keys[i], Tier::L1).unwrap())
            })
        });
    }
    group.finish();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("cache_result_hit_1000_keys");
    group.bench_function("plain", |b| {
        b.iter_custom(|iters| {
            current.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(plain(i * 7 % HIT_KEYS).await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("fail_safe", |b| {
        b.iter_custom(|iters| {
            current.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(protected(i * 7 % HIT_KEYS).await);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    c.final_summary();
    let get = plain_and_protected(|arm, order| {
        let target = if arm == 0 { &cache } else { &protected_cache };
        let start = Instant::now();
        for &i in order {
            black_box(
                target
                    .get_local::<String>(&keys[i as usize], Tier::L1)
                    .unwrap(),
            );
        }
        start.elapsed()
    });
    let memoized = plain_and_protected(|arm, order| {
        current.block_on(async {
            let start = Instant::now();
            if arm == 0 {
                for &i in order {
                    black_box(plain(i).await);
                }
            } else {
                for &i in order {
                    black_box(protected(i).await);
                }
            }
            start.elapsed()
        })
    });

    println!("\n== ratios (medians) ==");
    for (callers, keys, ours_calls, moka_calls) in calls_per_stampede {
        let group = format!("stampede_{callers}_callers_{keys}_keys");
        if let (Some(ours), Some(theirs)) = (median_ns(&group, "perf"), median_ns(&group, "moka")) {
            println!(
                "failing stampede, {callers} callers over {keys} key(s): perf {:.2} ms, moka {:.2} ms \
                 ({:.2}x moka's time); loader calls per stampede: perf {ours_calls:.2}, moka {moka_calls:.2}",
                ours / 1e6,
                theirs / 1e6,
                ours / theirs
            );
        }
    }
    for (what, times) in [("get hit", get), ("#[cache_result] hit", memoized)] {
        println!(
            "{what}, 1,000 keys in random order, interleaved: plain {:.1} ns, with fail-safe + \
             refresh-ahead + jitter {:.1} ns ({:+.1}%, median of the rounds' ratios)",
            times.median(0),
            times.median(1),
            (times.ratio(1, 0) - 1.0) * 100.0
        );
    }
    for group in ["get_hit_1000_keys", "cache_result_hit_1000_keys"] {
        if let (Some(plain), Some(protected)) =
            (median_ns(group, "plain"), median_ns(group, "fail_safe"))
        {
            println!(
                "{group}: plain {plain:.1} ns, with fail-safe + refresh-ahead + jitter \
                 {protected:.1} ns ({:+.1}%)",
                (protected / plain - 1.0) * 100.0
            );
        }
    }
}
