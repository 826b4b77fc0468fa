//! The task manager against raw tokio doing the same, in the same run, printing the ratio:
//! 100k trivial async tasks through `batch_submit` + `wait_for_tasks`, against a `JoinSet`
//! whose tasks take a `Semaphore` permit, results put back in input order. Both bound the
//! concurrency at 16 on a 2-worker runtime. Target: at most 1.5x raw tokio's time.
//!
//! `cargo bench --bench tasks`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    convert::Infallible,
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{interleaved, median_ns};
use criterion::Criterion;
use perf::{
    PerformanceConfig,
    monitor::Monitor,
    tasks::{TaskManager, TaskOutcome},
};
use tokio::{sync::Semaphore, task::JoinSet};

const TASKS: u64 = 100_000;
const WORKERS: u64 = 16;

async fn perf_pool(manager: &TaskManager) -> Vec<u64> {
    let handles = manager
        .batch_submit((0..TASKS).map(|i| async move { Ok::<_, Infallible>(black_box(i)) }))
        .await
        .unwrap();
    manager
        .wait_for_tasks(handles, None)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            TaskOutcome::Completed(value) => value,
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn raw_tokio() -> Vec<u64> {
    let permits = Arc::new(Semaphore::new(WORKERS as usize));
    let mut set = JoinSet::new();
    for i in 0..TASKS {
        let permits = Arc::clone(&permits);
        set.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            (i, black_box(i))
        });
    }
    let mut results = vec![0; TASKS as usize];
    while let Some(done) = set.join_next().await {
        let (i, value) = done.unwrap();
        results[i as usize] = value;
    }
    results
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = PerformanceConfig::default();
    config.tasks.max_workers = WORKERS;
    config.tasks.max_queued = TASKS;
    let manager = TaskManager::new(&config, &Monitor::default());
    assert_eq!(
        runtime.block_on(perf_pool(&manager)),
        runtime.block_on(raw_tokio())
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    let mut group = c.benchmark_group("tasks_100k");
    group.bench_function("perf", |b| {
        b.to_async(&runtime).iter(|| perf_pool(&manager))
    });
    group.bench_function("joinset_semaphore", |b| {
        b.to_async(&runtime).iter(raw_tokio)
    });
    group.finish();
    c.final_summary();

    println!("== ratios (medians) ==");
    if let (Some(ours), Some(theirs)) = (
        median_ns("tasks_100k", "perf"),
        median_ns("tasks_100k", "joinset_semaphore"),
    ) {
        println!(
            "100k tasks, criterion: perf {:.1} ms, JoinSet + Semaphore {:.1} ms: {:.2}x its time",
            ours / 1e6,
            theirs / 1e6,
            ours / theirs
        );
    }
    // Criterion measures each contender in one stretch, and this shared machine's speed drifts
    // by tens of percent between stretches: alternate them instead, and compare medians.
    let seconds = interleaved(2, INTERLEAVED_ROUNDS, |arm, _| {
        let start = Instant::now();
        if arm == 0 {
            black_box(runtime.block_on(perf_pool(&manager)));
        } else {
            black_box(runtime.block_on(raw_tokio()));
        }
        start.elapsed().as_secs_f64()
    });
    println!(
        "100k tasks, interleaved: perf {:.1} ms, JoinSet + Semaphore {:.1} ms: {:.2}x its time \
         (target <= 1.5x; median of the rounds' ratios)",
        seconds.median(0) * 1e3,
        seconds.median(1) * 1e3,
        seconds.ratio(0, 1)
    );
}

const INTERLEAVED_ROUNDS: usize = 21;
