//! The pool's bound, outcomes, timeouts, cancellation, panics, shutdown and resizing.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

use super::*;
use crate::config::TaskConfig;

fn manager(max_workers: u64, max_queued: u64) -> TaskManager {
    let config = PerformanceConfig {
        tasks: TaskConfig {
            max_workers,
            max_queued,
            max_blocking_workers: 2,
            timeout: Duration::from_secs(30),
        },
        ..PerformanceConfig::default()
    };
    TaskManager::new(&config, &Monitor::default())
}

/// Counts tasks running at once and remembers the most.
#[derive(Default)]
struct HighWater {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl HighWater {
    async fn run(&self, work: Duration) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(work).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_workers_run_at_once() {
    let manager = manager(3, 1000);
    let water = Arc::new(HighWater::default());
    let tasks = (0..40).map(|i| {
        let water = Arc::clone(&water);
        async move {
            water.run(Duration::from_millis(5)).await;
            Ok::<_, Infallible>(i)
        }
    });
    let handles = manager.batch_submit(tasks).await.expect("accepted");
    let outcomes = manager.wait_for_tasks(handles, None).await;
    let values: Vec<_> = outcomes
        .into_iter()
        .filter_map(TaskOutcome::completed)
        .collect();
    assert_eq!(
        values,
        (0..40).collect::<Vec<_>>(),
        "outcomes in input order"
    );
    assert_eq!(water.most.load(Ordering::SeqCst), 3);
    let stats = manager.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.queued,
            stats.running
        ),
        (40, 40, 0, 0)
    );
    assert!(
        stats.queue_wait.max > 0.0 && stats.run_time.p50 > 0.0,
        "{stats:?}"
    );
}

type BoxedTask = std::pin::Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

#[tokio::test(start_paused = true)]
async fn every_kind_of_outcome_comes_back_in_input_order() {
    let manager = manager(4, 100);
    let tasks: Vec<BoxedTask> = vec![
        Box::pin(async { Ok(1) }),
        Box::pin(async { Err("no ad".to_string()) }),
        Box::pin(async { panic!("bad data") }),
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(4)
        }),
    ];
    let handles = manager.batch_submit(tasks).await.expect("accepted");
    let outcomes = manager.wait_for_tasks(handles, None).await;
    assert_eq!(
        outcomes,
        [
            TaskOutcome::Completed(1),
            TaskOutcome::Failed("no ad".to_string()),
            TaskOutcome::Panicked("bad data".to_string()),
            TaskOutcome::TimedOut,
        ]
    );
    let stats = manager.stats();
    assert_eq!(
        (
            stats.completed,
            stats.failed,
            stats.panicked,
            stats.timed_out
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(stats.failure_rate, 0.75);
    // The pool survived the panic.
    let handle = manager
        .submit(async { Ok::<_, ()>(5) })
        .await
        .expect("accepted");
    assert_eq!(handle.await, TaskOutcome::Completed(5));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fires_on_time() {
    let manager = manager(2, 10);
    let started = tokio::time::Instant::now();
    let slow = manager
        .submit_with_timeout(
            async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, ()>(())
            },
            Some(Duration::from_millis(1500)),
        )
        .await
        .expect("accepted");
    assert_eq!(slow.await, TaskOutcome::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_millis(1500));

    manager.set_default_timeout(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let slow = manager
        .submit(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, ()>(())
        })
        .await
        .expect("accepted");
    assert_eq!(slow.await, TaskOutcome::TimedOut);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "the default timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_with_a_deadline_times_out_the_stragglers() {
    let manager = manager(4, 10);
    let quick = manager
        .submit(async { Ok::<_, ()>(1) })
        .await
        .expect("accepted");
    let slow = manager
        .submit(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ()>(2)
        })
        .await
        .expect("accepted");
    let outcomes = manager
        .wait_for_tasks(vec![quick, slow], Some(Duration::from_secs(1)))
        .await;
    assert_eq!(outcomes, [TaskOutcome::Completed(1), TaskOutcome::TimedOut]);
}

#[tokio::test]
async fn queued_and_running_tasks_can_be_cancelled() {
    let manager = manager(1, 10);
    let release = Arc::new(Notify::new());
    let blocker = {
        let release = Arc::clone(&release);
        manager
            .submit(async move {
                release.notified().await;
                Ok::<_, ()>("ran")
            })
            .await
            .expect("accepted")
    };
    let queued = manager
        .submit(async { Ok::<_, ()>("queued") })
        .await
        .expect("accepted");
    while manager.stats().queued == 0 {
        tokio::task::yield_now().await;
    }
    queued.cancel();
    assert_eq!(
        queued.await,
        TaskOutcome::Cancelled,
        "cancelled while waiting for a worker"
    );
    blocker.cancel();
    assert_eq!(
        blocker.await,
        TaskOutcome::Cancelled,
        "cancelled while running"
    );

    let after = manager
        .submit(async { Ok::<_, ()>("after") })
        .await
        .expect("accepted");
    assert_eq!(
        after.await,
        TaskOutcome::Completed("after"),
        "the worker was given back"
    );
    let failing = manager
        .submit(async { Err::<&str, _>(()) })
        .await
        .expect("accepted");
    assert_eq!(failing.await, TaskOutcome::Failed(()));
    let stats = manager.stats();
    assert_eq!((stats.cancelled, stats.completed, stats.failed), (2, 1, 1));
    assert_eq!(
        stats.failure_rate, 0.5,
        "one of two finished tasks failed; cancellations are not finished"
    );
}

#[tokio::test]
async fn cancel_all_cancels_what_is_there_and_not_what_comes_later() {
    let manager = manager(2, 10);
    let forever = || async {
        std::future::pending::<()>().await;
        Ok::<_, ()>(())
    };
    let handles = manager
        .batch_submit((0..4).map(|_| forever()))
        .await
        .expect("accepted");
    manager.cancel_all();
    let outcomes = manager.wait_for_tasks(handles, None).await;
    assert!(
        outcomes.iter().all(|o| *o == TaskOutcome::Cancelled),
        "{outcomes:?}"
    );
    let later = manager
        .submit(async { Ok::<_, ()>(7) })
        .await
        .expect("accepted");
    assert_eq!(later.await, TaskOutcome::Completed(7));
}

#[tokio::test]
async fn a_full_queue_refuses_try_submit_and_makes_submit_wait() {
    let manager = manager(1, 2);
    let release = Arc::new(Notify::new());
    let wait = |release: Arc<Notify>| async move {
        release.notified().await;
        Ok::<_, ()>(())
    };
    let running = manager
        .try_submit(wait(Arc::clone(&release)))
        .expect("room");
    while manager.stats().running == 0 {
        tokio::task::yield_now().await;
    }
    let queued: Vec<_> = (0..2)
        .map(|_| {
            manager
                .try_submit(wait(Arc::clone(&release)))
                .expect("room")
        })
        .collect();
    assert_eq!(
        manager.try_submit(wait(Arc::clone(&release))).map(|_| ()),
        Err(TaskError::QueueFull(2))
    );
    let waiting_submit = manager.submit(async { Ok::<_, ()>(()) });
    tokio::pin!(waiting_submit);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut waiting_submit)
            .await
            .is_err(),
        "submit waits while the queue is full"
    );
    release.notify_waiters();
    let late = waiting_submit.await.expect("room once the queue moved");
    release.notify_waiters();
    for handle in queued.into_iter().chain([running]) {
        // Tasks that subscribed after the first notification need another.
        while !handle.is_finished() {
            release.notify_waiters();
            tokio::task::yield_now().await;
        }
        assert_eq!(handle.await, TaskOutcome::Completed(()));
    }
    assert_eq!(late.await, TaskOutcome::Completed(()));
}

#[tokio::test]
async fn shutdown_drains_then_refuses() {
    let manager = manager(2, 10);
    let handles = manager
        .batch_submit((0..5).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(i)
        }))
        .await
        .expect("accepted");
    let report = manager.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    let outcomes = manager.wait_for_tasks(handles, None).await;
    assert!(
        outcomes.iter().all(TaskOutcome::is_completed),
        "{outcomes:?}"
    );
    assert_eq!(
        manager.submit(async { Ok::<_, ()>(0) }).await.map(|_| ()),
        Err(TaskError::ShutDown)
    );
    assert_eq!(
        manager.try_submit(async { Ok::<_, ()>(0) }).map(|_| ()),
        Err(TaskError::ShutDown)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_what_outlasts_the_grace_period() {
    let manager = manager(2, 10);
    let slow = manager
        .submit(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ()>(())
        })
        .await
        .expect("accepted");
    let report = manager.shutdown(Duration::from_secs(1)).await;
    assert!(!report.drained);
    assert_eq!(slow.await, TaskOutcome::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_work_runs_on_its_own_bounded_pool() {
    let manager = manager(1, 100);
    let water = Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    let mut handles = Vec::new();
    for i in 0..8u64 {
        let water = Arc::clone(&water);
        let handle = manager
            .submit_blocking(move || {
                {
                    let mut w = water.lock().expect("unpoisoned");
                    w.0 += 1;
                    w.1 = w.1.max(w.0);
                }
                std::thread::sleep(Duration::from_millis(10));
                water.lock().expect("unpoisoned").0 -= 1;
                Ok::<_, ()>(i * i)
            })
            .await
            .expect("accepted");
        handles.push(handle);
    }
    let panicking = manager
        .submit_blocking(|| -> Result<(), ()> { panic!("blocking panic") })
        .await
        .expect("accepted");
    let outcomes = manager.wait_for_tasks(handles, None).await;
    let squares: Vec<u64> = outcomes
        .into_iter()
        .filter_map(TaskOutcome::completed)
        .collect();
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
    assert_eq!(
        water.lock().expect("unpoisoned").1,
        2,
        "max_blocking_workers = 2"
    );
    assert_eq!(
        panicking.await,
        TaskOutcome::Panicked("blocking panic".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_workers_can_grow_and_shrink_while_tasks_run() {
    let manager = manager(1, 1000);
    let water = Arc::new(HighWater::default());
    let run = |manager: &TaskManager, n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let water = Arc::clone(&water);
                async move {
                    water.run(Duration::from_millis(10)).await;
                    Ok::<_, ()>(())
                }
            })
            .collect();
        let manager = manager.clone();
        async move {
            let handles = manager.batch_submit(tasks).await.expect("accepted");
            manager.wait_for_tasks(handles, None).await
        }
    };
    run(&manager, 6).await;
    assert_eq!(water.most.swap(0, Ordering::SeqCst), 1);

    manager.set_max_workers(4).expect("valid");
    let outcomes = run(&manager, 16).await;
    assert!(outcomes.iter().all(TaskOutcome::is_completed));
    assert_eq!(water.most.swap(0, Ordering::SeqCst), 4);

    // Shrink while four run: none is lost, and afterwards two at most run.
    let busy = tokio::spawn(run(&manager, 8));
    tokio::time::sleep(Duration::from_millis(5)).await;
    manager.set_max_workers(2).expect("valid");
    let outcomes = busy.await.expect("no panic");
    assert!(
        outcomes.iter().all(TaskOutcome::is_completed),
        "no task lost"
    );
    water.most.store(0, Ordering::SeqCst);
    let outcomes = run(&manager, 12).await;
    assert!(outcomes.iter().all(TaskOutcome::is_completed));
    assert_eq!(water.most.load(Ordering::SeqCst), 2);
    assert_eq!(manager.set_max_workers(0), Err(TaskError::NoWorkers));
    assert_eq!(manager.stats().max_workers, 2);
}

#[test]
fn max_workers_shrinks_without_a_runtime() {
    let manager = manager(4, 10);
    manager.set_max_workers(2).expect("valid");
    assert_eq!(manager.stats().max_workers, 2);
    assert_eq!(manager.inner.workers.available_permits(), 2);
}

/// Shrinking while every worker is busy: the tasks run on, and each one's worker retires
/// when it ends, however it ends (here aborted); growing meanwhile keeps workers instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_workers_retire_when_their_tasks_end_even_aborted() {
    let manager = manager(4, 100);
    let barrier = Arc::new(tokio::sync::Barrier::new(5));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let barrier = Arc::clone(&barrier);
        let task = async move {
            barrier.wait().await;
            std::future::pending::<Result<(), Infallible>>().await
        };
        handles.push(manager.submit(task).await.expect("queued"));
    }
    barrier.wait().await; // all four run
    manager.set_max_workers(1).expect("valid");
    let stats = manager.stats();
    assert_eq!(
        (stats.running, stats.max_workers),
        (4, 1),
        "none interrupted"
    );
    manager.set_max_workers(3).expect("valid");
    assert_eq!(manager.inner.retiring.load(Ordering::SeqCst), 1);
    handles.iter().for_each(TaskHandle::cancel);
    let outcomes = manager.wait_for_tasks(handles, None).await;
    assert!(outcomes.iter().all(|o| matches!(o, TaskOutcome::Cancelled)));
    tokio::task::yield_now().await;
    assert_eq!(manager.inner.retiring.load(Ordering::SeqCst), 0);
    assert_eq!(
        manager.inner.workers.available_permits(),
        3,
        "three workers left"
    );
    assert_eq!(manager.stats().running, 0);
}
