//! The task manager through the optimizer, as a service uses it: submitting work, reading the
//! metrics it records, and changing max_workers with the configuration.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use perf::{ConfigError, PerformanceOptimizer, tasks::TaskOutcome};

fn optimizer() -> PerformanceOptimizer {
    PerformanceOptimizer::builder().build().expect("valid")
}

#[test]
fn task_outcomes_are_recorded_as_metrics_and_operation_stats() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let optimizer = metrics::with_local_recorder(&recorder, optimizer);
    runtime.block_on(async {
        let tasks = optimizer.tasks();
        let handles = tasks
            .batch_submit((0..3).map(|i| async move { if i == 2 { Err("failed") } else { Ok(i) } }))
            .await
            .expect("accepted");
        let outcomes = tasks.wait_for_tasks(handles, None).await;
        assert_eq!(
            outcomes,
            [
                TaskOutcome::Completed(0),
                TaskOutcome::Completed(1),
                TaskOutcome::Failed("failed")
            ]
        );
    });
    // Task outcomes reach the recorder in batches per thread, as monitored calls do.
    perf::metrics::flush();
    let counts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == perf::metrics::ASYNC_OPERATIONS_TOTAL)
        .filter_map(|(key, _, _, value)| {
            let labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let DebugValue::Counter(n) = value else {
                return None;
            };
            (labels.contains(&("operation".into(), "task".into())) && n > 0).then(|| {
                let status = labels
                    .iter()
                    .find(|(k, _)| k == "status")
                    .map(|(_, v)| v.clone());
                (status.unwrap_or_default(), n)
            })
        })
        .collect();
    assert!(counts.contains(&("success".into(), 2)), "{counts:?}");
    assert!(counts.contains(&("error".into(), 1)), "{counts:?}");
    let task = optimizer
        .monitor()
        .operation_snapshot("task")
        .expect("tasks are an operation");
    assert_eq!((task.count, task.errors), (3, 1));
    assert_eq!(optimizer.tasks().stats().failure_rate, 1.0 / 3.0);
}

#[tokio::test]
async fn max_workers_follows_the_configuration_and_other_fields_are_refused() {
    let optimizer = optimizer();
    let mut config = (*optimizer.config()).clone();
    config.tasks.max_workers = 25;
    config.tasks.timeout = Duration::from_secs(5);
    optimizer.update_config(config.clone()).expect("hot fields");
    assert_eq!(optimizer.tasks().stats().max_workers, 25);
    assert_eq!(*optimizer.config(), config);

    let mut cold = config.clone();
    cold.cache.max_size = 5;
    cold.tasks.max_workers = 2;
    let Err(ConfigError::Invalid(errors)) = optimizer.update_config(cold) else {
        panic!("cache_max_size cannot change at run time");
    };
    assert_eq!(
        errors.iter().map(|e| e.field).collect::<Vec<_>>(),
        ["cache_max_size"]
    );
    assert_eq!(optimizer.tasks().stats().max_workers, 25, "nothing changed");

    let mut zero = config;
    zero.tasks.max_workers = 0;
    let Err(ConfigError::Invalid(errors)) = optimizer.update_config(zero) else {
        panic!("max_workers = 0 is invalid");
    };
    assert_eq!(errors[0].field, "max_workers");
}
