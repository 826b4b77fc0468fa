//! The attribute macros against their rivals, in the same run, printing the ratios.
//!
//! - A `#[cache_result]` hit on a one-argument async fn against the `cached` crate's
//!   `#[cached(time = 60)]` on the same key and value types, on 1 and 2 threads; with the
//!   floor any cache pays here (the call, the copy of the value and its drop) for reference.
//! - `#[performance_monitor]` overhead over the bare fn with a Prometheus recorder installed,
//!   against writing `histogram!(..).record(..)` and `counter!(..).increment(1)` by hand, on 1
//!   and 2 threads (both calling the same operation at once: the case where shared metric
//!   storage is contended).
//!
//! `cargo bench --bench macros`; `MONITOR_PROFILE=<threads>` only runs monitored calls on that
//! many threads for `MONITOR_SECONDS` (default 10), for `perf record`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use common::{awaited_calls, interleaved, median_ns, runtime, slowest_thread};
use criterion::Criterion;
use perf::{cache_result, performance_monitor};

const KEYS: u64 = 100;

fn value(id: u64) -> String {
    format!("campaign {id:>12} creative banner-728x90")
}

#[cache_result(ttl = 60, cache_type = "l1")]
async fn ours(id: u64) -> String {
    value(id)
}

#[cached::proc_macro::cached(time = 60)]
async fn theirs(id: u64) -> String {
    value(id)
}

thread_local! {
    static FLOOR: Vec<String> = (0..KEYS).map(value).collect();
}

/// What no cache can avoid: a copy of a value found by index, with no lookup or checks.
async fn floor(id: u64) -> String {
    FLOOR.with(|v| v[id as usize].clone())
}

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[performance_monitor("bench.monitored")]
#[inline(never)]
fn monitored(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
fn by_hand(x: u64) -> u64 {
    let start = Instant::now();
    let result = black_box(x).wrapping_mul(3);
    metrics::histogram!("processing_time_seconds", "operation" => "bench.by_hand")
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("async_operations_total", "operation" => "bench.by_hand", "status" => "success")
        .increment(1);
    result
}

/// Each of `threads` threads awaits `iters` calls, on the keys in turn from its own offset.
fn concurrent<F, Fut>(threads: usize, iters: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = String>,
{
    let keys = |thread: usize| {
        let mut i = thread as u64;
        move || {
            i += 1;
            i % KEYS
        }
    };
    awaited_calls(threads, iters, keys, call)
}

/// Time for each of `threads` threads to make `iters` calls of the sync `call` at once.
fn calls_at_once(threads: usize, iters: u64, call: fn(u64) -> u64) -> Duration {
    slowest_thread(threads, |thread, barrier| {
        barrier.wait();
        let start = Instant::now();
        for i in 0..iters {
            black_box(call(i + thread as u64));
        }
        start.elapsed()
    })
}

fn main() {
    common::run_starts();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                perf::metrics::PROCESSING_TIME_SECONDS.into(),
            ),
            perf::metrics::LATENCY_BUCKETS_SECONDS,
        )
        .unwrap()
        .install_recorder()
        .unwrap();
    // What a service's exporter does between scrapes: without it, the exporter keeps every
    // sample in memory, and each arm pays for the pages it takes.
    let upkeep = prometheus.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            upkeep.run_upkeep();
        }
    });

    if let Ok(threads) = std::env::var("MONITOR_PROFILE") {
        let seconds: u64 = std::env::var("MONITOR_SECONDS").map_or(10, |s| s.parse().unwrap());
        let (threads, calls) = (threads.parse().unwrap(), 1_000_000);
        let start = Instant::now();
        let mut rounds = 0;
        while start.elapsed() < Duration::from_secs(seconds) {
            calls_at_once(threads, calls, monitored);
            rounds += 1;
        }
        println!(
            "{:.1} ns a monitored call per thread",
            start.elapsed().as_nanos() as f64 / (rounds * calls) as f64
        );
        return;
    }

    // Warm both caches with every key.
    runtime().block_on(async {
        for id in 0..KEYS {
            assert_eq!(ours(id).await, theirs(id).await);
        }
    });

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("cache_result_hit_{threads}_thread"));
        group.bench_function("perf", |b| {
            b.iter_custom(|iters| concurrent(threads, iters, ours))
        });
        group.bench_function("floor", |b| {
            b.iter_custom(|iters| concurrent(threads, iters, floor))
        });
        group.bench_function("cached", |b| {
            b.iter_custom(|iters| concurrent(threads, iters, theirs))
        });
        group.finish();
    }
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("monitor_overhead_{threads}_thread"));
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| calls_at_once(threads, iters, bare))
        });
        group.bench_function("performance_monitor", |b| {
            b.iter_custom(|iters| calls_at_once(threads, iters, monitored))
        });
        group.bench_function("by_hand", |b| {
            b.iter_custom(|iters| calls_at_once(threads, iters, by_hand))
        });
        group.finish();
    }
    c.final_summary();
    // The monitor's overhead again, the three arms in alternation over 21 rounds: medians of
    // each round's overhead over the bare call (common::interleaved).
    let mut overheads = Vec::new();
    for threads in [1, 2] {
        let calls = 1_000_000;
        let arms: [fn(u64) -> u64; 3] = [bare, monitored, by_hand];
        let measured = interleaved(3, 21, |arm, _| {
            calls_at_once(threads, calls, arms[arm]).as_nanos() as f64 / calls as f64
        });
        overheads.push((threads, measured.excess(1, 0), measured.excess(2, 0)));
    }
    // When the monitored calls ran, the recorder saw them, as a scrape would.
    if let Some(calls) = perf::global()
        .monitor()
        .operation_snapshot("bench.monitored")
    {
        perf::metrics::flush();
        let scraped = format!(
            "async_operations_total{{operation=\"bench.monitored\",status=\"success\"}} {}",
            calls.count
        );
        assert!(prometheus.render().contains(&scraped), "{scraped}");
    }

    println!("\n== ratios (medians) ==");
    for threads in [1, 2] {
        let group = format!("cache_result_hit_{threads}_thread");
        if let (Some(ours), Some(theirs), Some(floor)) = (
            median_ns(&group, "perf"),
            median_ns(&group, "cached"),
            median_ns(&group, "floor"),
        ) {
            println!(
                "cache_result hit, {threads} thread(s): perf {ours:.1} ns, cached {theirs:.1} ns: \
                 {:.2}x faster (floor {floor:.1} ns)",
                theirs / ours
            );
        }
    }
    for (threads, ours, theirs) in overheads {
        println!(
            "performance_monitor overhead, {threads} thread(s), interleaved: {ours:.1} ns \
             (target <= 100 ns); by hand {theirs:.1} ns; ours / by hand {:.2}",
            ours / theirs
        );
    }
    for threads in [1, 2] {
        let group = format!("monitor_overhead_{threads}_thread");
        let m = |bench| median_ns(&group, bench);
        if let (Some(bare), Some(monitored), Some(by_hand)) =
            (m("bare"), m("performance_monitor"), m("by_hand"))
        {
            let (ours, theirs) = (monitored - bare, by_hand - bare);
            println!(
                "performance_monitor overhead, {threads} thread(s): {ours:.1} ns (target <= 100 \
                 ns); by hand {theirs:.1} ns; ours / by hand {:.2} (target <= 0.5)",
                ours / theirs
            );
        }
    }
}
