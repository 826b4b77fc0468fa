//! `#[cache_result]` hits at every key-set size: perf against `cached`'s `#[cached(time = 60)]`
//! on a one-argument async fn returning a 40-byte `String`, at 100, 1k, 10k and 100k distinct
//! keys read in a random precomputed order (not cyclic), on 1 and 2 threads, with a floor (a
//! thread-local `Vec<String>` index and clone) for what any memoizer must pay, and a map (a
//! thread-local `HashMap<u64, String>` lookup and clone: no lock, clock, coherence check or
//! statistics) for what any memoizer keeping its values in a hash table must. Each size is
//! measured by criterion and then in alternation over 15 rounds, together with the same map
//! padded to a near slot's 64 bytes a bucket; prints both tables, the interleaved one with the
//! median of the per-round `cached`/perf ratios (goal: at least 2x on 1 thread, above 1x on 2)
//! and of `cached` over each map.
//!
//! Then the same hit with other arguments at up to 10k keys, 1 thread, perf against `cached`
//! in alternation: string arguments of 24 and 64 bytes (a fingerprint past 16 bytes, kept in
//! perf's table for long keys, and one past the fingerprint's 40, kept under a wide print),
//! and two `u64` ids.
//!
//! Then the hit ratio that memoizing keeps: a Zipf(1.0) trace over 100k keys through
//! `#[cache_result]` with L1 bounded to 10k entries, against moka bounded the same.
//!
//! `SWEEP_THREADS=1,2` (default both), `SWEEP_SIZES=100,1000` (default all four),
//! `SWEEP_ROUNDS=41` (default 15);
//! `SWEEP_PROFILE=<keys>` runs a plain loop of hits for `SWEEP_SECONDS`, for `perf record`
//! (`SWEEP_ARGUMENTS=24`, `64` or `ids`: of the other arguments' functions).
//! `cargo bench --bench hit_sweep -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::HashMap,
    hint::black_box,
    sync::LazyLock,
    time::{Duration, Instant},
};

use common::{awaited_calls, interleaved, median_ns, runtime};
use criterion::Criterion;

fn value(id: u64) -> String {
    format!("campaign {id:>12} creative banner-728x90")
}

/// An optimizer whose L1 holds `max_size` entries, for one memoized function's calls.
fn optimizer(max_size: u64) -> perf::PerformanceOptimizer {
    let mut config = perf::PerformanceConfig::default();
    config.cache.max_size = max_size;
    perf::PerformanceOptimizer::builder()
        .config(config)
        .build()
        .unwrap()
}

/// Random draws from `0..n`, precomputed; 1M of them, read in sequence.
const ORDER_LEN: usize = 1 << 20;

fn order(n: u64, seed: u64) -> Vec<u64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..ORDER_LEN).map(|_| rng.random_range(0..n)).collect()
}

/// A map arm's value padded so that a bucket takes 64 bytes, as a near slot does: the map's
/// 32 bytes of key and `String`, and room for what a slot keeps beside them (a key of two
/// words, the change stamp, the deadline and the precise expiry).
struct SlotSized {
    value: String,
    _beside: [u64; 4],
}

impl SlotSized {
    fn new(value: String) -> Self {
        Self {
            value,
            _beside: [0; 4],
        }
    }
}

const _: () = assert!(size_of::<(u64, SlotSized)>() == 64);

macro_rules! sized {
    ($($module:ident = $n:expr),*) => {$(
        mod $module {
            use super::*;
            pub(crate) const KEYS: u64 = $n;
            pub(crate) static OPTIMIZER: LazyLock<perf::PerformanceOptimizer> =
                LazyLock::new(|| optimizer(2 * KEYS + 1000));

            #[perf::cache_result(ttl = 60, cache_type = "l1", optimizer = *OPTIMIZER)]
            pub(crate) async fn ours(id: u64) -> String {
                value(id)
            }

            #[cached::proc_macro::cached(time = 60)]
            pub(crate) async fn theirs(id: u64) -> String {
                value(id)
            }

            thread_local! {
                static FLOOR: Vec<String> = (0..KEYS).map(value).collect();
                static MAP: HashMap<u64, String, foldhash::fast::RandomState> =
                    (0..KEYS).map(|id| (id, value(id))).collect();
                static WIDE_MAP: HashMap<u64, SlotSized, foldhash::fast::RandomState> =
                    (0..KEYS).map(|id| (id, SlotSized::new(value(id)))).collect();
            }

            pub(crate) async fn floor(id: u64) -> String {
                FLOOR.with(|v| v[id as usize].clone())
            }

            pub(crate) async fn map(id: u64) -> String {
                MAP.with(|m| m[&id].clone())
            }

            pub(crate) async fn wide_map(id: u64) -> String {
                WIDE_MAP.with(|m| m[&id].value.clone())
            }
        }
    )*};
}

sized!(k100 = 100, k1k = 1_000, k10k = 10_000, k100k = 100_000);

/// The same hit with a string argument of `$width` bytes: at 24 its fingerprint is past 16
/// bytes, so perf keeps it in a site's table for long keys (88-byte slots), not the short
/// keys' (64); at 64 it is past a fingerprint's 40 bytes, and kept under its wide print.
macro_rules! string_keyed {
    ($($module:ident = $width:expr),*) => {$(
        mod $module {
            use super::*;

            pub(crate) const MAX_KEYS: u64 = 10_000;
            pub(crate) const WIDTH: usize = $width;
            /// The argument of call `id`.
            pub(crate) static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
                (0..MAX_KEYS)
                    .map(|id| {
                        let name = format!("placement-{id:>w$}", w = WIDTH - 10);
                        &*Box::leak(name.into_boxed_str())
                    })
                    .collect()
            });
            pub(crate) static OPTIMIZER: LazyLock<perf::PerformanceOptimizer> =
                LazyLock::new(|| optimizer(2 * MAX_KEYS + 1000));

            #[perf::cache_result(ttl = 60, cache_type = "l1", optimizer = *OPTIMIZER)]
            pub(crate) async fn ours(name: &'static str) -> String {
                format!("{name} creative banner")
            }

            #[cached::proc_macro::cached(time = 60)]
            pub(crate) async fn theirs(name: &'static str) -> String {
                format!("{name} creative banner")
            }
        }
    )*};
}

string_keyed!(long_keys = 24, wide_keys = 64);

/// The same hit with two numeric arguments: a campaign and a placement id.
mod two_ids {
    use super::*;

    pub(crate) const MAX_KEYS: u64 = 10_000;
    /// The arguments of call `id`.
    pub(crate) static IDS: LazyLock<Vec<(u64, u64)>> =
        LazyLock::new(|| (0..MAX_KEYS).map(|id| (1_000 + id % 97, id)).collect());
    pub(crate) static OPTIMIZER: LazyLock<perf::PerformanceOptimizer> =
        LazyLock::new(|| optimizer(2 * MAX_KEYS + 1000));

    #[perf::cache_result(ttl = 60, cache_type = "l1", optimizer = *OPTIMIZER)]
    pub(crate) async fn ours(campaign: u64, placement: u64) -> String {
        value(campaign << 32 | placement)
    }

    #[cached::proc_macro::cached(time = 60)]
    pub(crate) async fn theirs(campaign: u64, placement: u64) -> String {
        value(campaign << 32 | placement)
    }
}

/// `cached`/perf with arguments of one shape, 1 thread, interleaved: (keys, measured).
fn argument_rows<A, O, OF, C, CF>(
    arguments: &[A],
    sizes: &[u64],
    ours: O,
    theirs: C,
) -> Vec<(u64, common::Interleaved)>
where
    A: Copy + Sync,
    O: Fn(A) -> OF + Copy + Sync,
    OF: Future<Output = String>,
    C: Fn(A) -> CF + Copy + Sync,
    CF: Future<Output = String>,
{
    sizes
        .iter()
        .filter(|&&n| n <= arguments.len() as u64)
        .map(|&n| {
            runtime().block_on(async {
                for &args in &arguments[..n as usize] {
                    assert_eq!(ours(args).await, theirs(args).await);
                }
            });
            let measured = interleaved(2, rounds(), |arm, _| {
                let elapsed = match arm {
                    0 => concurrent(1, CALLS_PER_ROUND, n, |id| theirs(arguments[id as usize])),
                    _ => concurrent(1, CALLS_PER_ROUND, n, |id| ours(arguments[id as usize])),
                };
                elapsed.as_nanos() as f64 / CALLS_PER_ROUND as f64
            });
            (n, measured)
        })
        .collect()
}

mod zipf {
    use std::sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    };

    pub(crate) const KEYS: u64 = 100_000;
    pub(crate) const BOUND: u64 = 10_000;
    pub(crate) static LOADS: AtomicU64 = AtomicU64::new(0);

    pub(crate) static OPTIMIZER: LazyLock<perf::PerformanceOptimizer> =
        LazyLock::new(|| super::optimizer(BOUND));

    #[perf::cache_result(ttl = 3600, cache_type = "l1", optimizer = *OPTIMIZER)]
    pub(crate) async fn ours(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::Relaxed);
        super::value(id)
    }

    pub(crate) fn loads() -> u64 {
        LOADS.load(Ordering::Relaxed)
    }
}

/// Hit ratios on a Zipf(1.0) trace of 2M calls over 100k keys, both memoizers bounded to 10k.
fn zipf_hit_ratio() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Zipf};

    const CALLS: usize = 2_000_000;
    let zipf = Zipf::new(zipf::KEYS as f64, 1.0).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let trace: Vec<u64> = (0..CALLS)
        .map(|_| zipf.sample(&mut rng) as u64 - 1)
        .collect();

    let started = Instant::now();
    runtime().block_on(async {
        for &id in &trace {
            black_box(zipf::ours(id).await);
        }
    });
    let ours_ns = started.elapsed().as_nanos() as f64 / CALLS as f64;
    let ours = 1.0 - zipf::loads() as f64 / CALLS as f64;

    let moka = moka::sync::Cache::new(zipf::BOUND);
    let mut moka_loads = 0u64;
    let started = Instant::now();
    for &id in &trace {
        black_box(moka.get_with(id, || {
            moka_loads += 1;
            value(id)
        }));
    }
    let moka_ns = started.elapsed().as_nanos() as f64 / CALLS as f64;
    let theirs = 1.0 - moka_loads as f64 / CALLS as f64;
    println!(
        "\n== Zipf(1.0), 100k keys, 10k bound, 2M calls: hit ratio perf {ours:.3}, moka {theirs:.3}; \
         one pass from empty, {ours_ns:.0} and {moka_ns:.0} ns a call (misses included) =="
    );
}

/// Each of `threads` threads awaits `iters` calls on keys in a random order of its own.
fn concurrent<F, Fut>(threads: usize, iters: u64, n: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = String>,
{
    let keys = |thread: usize| {
        let order = order(n, 17 + thread as u64);
        let mut at = (iters as usize).wrapping_mul(0x9E37) % ORDER_LEN;
        move || {
            let key = order[at];
            at = (at + 1) & (ORDER_LEN - 1);
            key
        }
    };
    awaited_calls(threads, iters, keys, call)
}

macro_rules! bench_size {
    ($c:expr, $threads:expr, $sizes:expr, $module:ident, $rows:expr) => {{
        let n = $module::KEYS;
        if $sizes.contains(&n) {
            runtime().block_on(async {
                for id in 0..n {
                    assert_eq!($module::ours(id).await, $module::theirs(id).await);
                }
            });
            let group_name = format!("sweep_{}t_{n}", $threads);
            let mut group = $c.benchmark_group(&group_name);
            group.bench_function("perf", |b| {
                b.iter_custom(|iters| concurrent($threads, iters, n, $module::ours))
            });
            group.bench_function("cached", |b| {
                b.iter_custom(|iters| concurrent($threads, iters, n, $module::theirs))
            });
            group.bench_function("floor", |b| {
                b.iter_custom(|iters| concurrent($threads, iters, n, $module::floor))
            });
            group.bench_function("map", |b| {
                b.iter_custom(|iters| concurrent($threads, iters, n, $module::map))
            });
            group.finish();
            // The same four and the slot-sized map in alternation (common::interleaved),
            // `cached` first.
            let calls = CALLS_PER_ROUND;
            let measured = interleaved(5, rounds(), |arm, _| {
                let elapsed = match arm {
                    0 => concurrent($threads, calls, n, $module::theirs),
                    1 => concurrent($threads, calls, n, $module::ours),
                    2 => concurrent($threads, calls, n, $module::floor),
                    3 => concurrent($threads, calls, n, $module::map),
                    _ => concurrent($threads, calls, n, $module::wide_map),
                };
                elapsed.as_nanos() as f64 / calls as f64
            });
            $rows.push(($threads, n, measured));
            let stats = $module::OPTIMIZER.cache().stats();
            println!(
                "  L1 after {group_name}: hits {} misses {}",
                stats.l1.hits, stats.l1.misses
            );
        }
    }};
}

/// Rounds of the interleaved measurement (`SWEEP_ROUNDS` overrides), and calls per thread in
/// each arm of a round.
const ROUNDS: usize = 15;
const CALLS_PER_ROUND: u64 = 200_000;

fn rounds() -> usize {
    std::env::var("SWEEP_ROUNDS").map_or(ROUNDS, |s| s.parse().unwrap())
}

fn list(var: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(var).map_or_else(
        |_| default.to_vec(),
        |v| v.split(',').map(|s| s.trim().parse().unwrap()).collect(),
    )
}

/// A plain loop of `call(id)` over `keys` keys in a random order for `SWEEP_SECONDS`
/// (default 10), for `perf record`: `SWEEP_PROFILE=<keys>`, with `SWEEP_ARGUMENTS=24`, `64`
/// or `ids` for the other arguments' functions (up to 10k keys).
fn profile<F, Fut>(keys: u64, call: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = String>,
{
    let seconds: u64 = std::env::var("SWEEP_SECONDS").map_or(10, |s| s.parse().unwrap());
    let order = order(keys, 17);
    runtime().block_on(async {
        for id in 0..keys {
            black_box(call(id).await);
        }
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            for &id in &order {
                black_box(call(id).await);
            }
            calls += order.len() as u64;
        }
        println!(
            "{keys} keys: {:.1} ns a hit",
            start.elapsed().as_nanos() as f64 / calls as f64
        );
    });
}

fn main() {
    common::run_starts();
    if let Ok(n) = std::env::var("SWEEP_PROFILE") {
        let n: u64 = n.parse().unwrap();
        match std::env::var("SWEEP_ARGUMENTS").as_deref() {
            Ok("24") => profile(n, |id| long_keys::ours(long_keys::NAMES[id as usize])),
            Ok("64") => profile(n, |id| wide_keys::ours(wide_keys::NAMES[id as usize])),
            Ok("ids") => profile(n, |id| {
                let (campaign, placement) = two_ids::IDS[id as usize];
                two_ids::ours(campaign, placement)
            }),
            _ => match n {
                k100::KEYS => profile(n, k100::ours),
                k1k::KEYS => profile(n, k1k::ours),
                k10k::KEYS => profile(n, k10k::ours),
                k100k::KEYS => profile(n, k100k::ours),
                _ => panic!("SWEEP_PROFILE: one of 100, 1000, 10000, 100000"),
            },
        }
        return;
    }
    let threads = list("SWEEP_THREADS", &[1, 2]);
    let sizes = list("SWEEP_SIZES", &[100, 1_000, 10_000, 100_000]);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    // Each size's interleaved measurement: (threads, keys, arms `cached`, perf, floor, map).
    let mut rows = Vec::new();
    for &t in &threads {
        let t = t as usize;
        bench_size!(c, t, sizes, k100, rows);
        bench_size!(c, t, sizes, k1k, rows);
        bench_size!(c, t, sizes, k10k, rows);
        bench_size!(c, t, sizes, k100k, rows);
    }
    c.final_summary();
    let shape_rows = [
        (
            format!("a {}-byte string", long_keys::WIDTH),
            argument_rows(
                &long_keys::NAMES,
                &sizes,
                long_keys::ours,
                long_keys::theirs,
            ),
        ),
        (
            format!("a {}-byte string", wide_keys::WIDTH),
            argument_rows(
                &wide_keys::NAMES,
                &sizes,
                wide_keys::ours,
                wide_keys::theirs,
            ),
        ),
        (
            "two u64 ids".to_owned(),
            argument_rows(
                &two_ids::IDS,
                &sizes,
                |(campaign, placement)| two_ids::ours(campaign, placement),
                |(campaign, placement)| two_ids::theirs(campaign, placement),
            ),
        ),
    ];
    zipf_hit_ratio();
    println!(
        "\n== interleaved, {} rounds of {CALLS_PER_ROUND} calls a thread (medians, ns per call per thread) ==",
        rounds()
    );
    println!(
        "| threads | keys | perf | cached | floor | map | 64-byte map | cached/perf | cached/map | cached/64-byte map (medians of per-round ratios) |"
    );
    // Arms: `cached`, perf, floor, map, 64-byte map.
    for (t, n, measured) in &rows {
        println!(
            "| {t} | {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x | {:.2}x |",
            measured.median(1),
            measured.median(0),
            measured.median(2),
            measured.median(3),
            measured.median(4),
            measured.ratio(0, 1),
            measured.ratio(0, 3),
            measured.ratio(0, 4)
        );
    }
    println!("\n== other arguments, 1 thread, interleaved ==");
    println!("| arguments | keys | perf | cached | cached/perf |");
    // Arms: `cached`, perf.
    for (shape, rows) in &shape_rows {
        for (n, measured) in rows {
            println!(
                "| {shape} | {n} | {:.1} | {:.1} | {:.2}x |",
                measured.median(1),
                measured.median(0),
                measured.ratio(0, 1)
            );
        }
    }
    println!("\n== criterion medians (ns per call per thread) ==");
    println!("| threads | keys | perf | cached | floor | map | cached/perf |");
    for &t in &threads {
        for &n in &sizes {
            let group = format!("sweep_{t}t_{n}");
            let m = |b| median_ns(&group, b).unwrap_or(f64::NAN);
            let (ours, theirs, floor, map) = (m("perf"), m("cached"), m("floor"), m("map"));
            if ours.is_nan() {
                continue; // Not run: a filter left it out.
            }
            println!(
                "| {t} | {n} | {ours:.1} | {theirs:.1} | {floor:.1} | {map:.1} | {:.2}x |",
                theirs / ours
            );
        }
    }
}
