//! `#[performance_monitor]` and `performance_context`, as a user writes them: what they record.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use perf::{monitor::Status, performance_context, performance_monitor};

/// One recorder for the whole test binary; tests use distinct operation names.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder in this binary");
        snapshotter
    })
}

/// Everything recorded so far, accumulated: a snapshot drains the recorder, and tests run in
/// parallel, so each snapshot is folded into one total. Keys: `(operation, status)`, with
/// status `"latency"` counting recorded latencies.
fn totals() -> &'static Mutex<HashMap<(String, String), u64>> {
    static TOTALS: OnceLock<Mutex<HashMap<(String, String), u64>>> = OnceLock::new();
    TOTALS.get_or_init(Mutex::default)
}

/// `async_operations_total` by status, and how many latencies were recorded, for `operation`.
/// Threads hand their calls to the recorder in batches: flushed first, as a scrape does.
fn recorded(operation: &str) -> (HashMap<String, u64>, usize) {
    let mut totals = totals().lock().expect("not poisoned");
    perf::metrics::flush();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let labels: HashMap<_, _> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let Some(op) = labels.get("operation").cloned() else {
            continue;
        };
        match (key.key().name(), value) {
            ("async_operations_total", DebugValue::Counter(n)) => {
                *totals.entry((op, labels["status"].clone())).or_default() += n;
            }
            ("processing_time_seconds", DebugValue::Histogram(values)) => {
                *totals.entry((op, "latency".into())).or_default() += values.len() as u64;
            }
            _ => {}
        }
    }
    let mut statuses = HashMap::new();
    let mut latencies = 0;
    for ((op, status), n) in totals.iter() {
        if op == operation {
            if status == "latency" {
                latencies = *n as usize;
            } else if *n > 0 {
                statuses.insert(status.clone(), *n);
            }
        }
    }
    (statuses, latencies)
}

fn stats(operation: &str) -> perf::monitor::OperationSnapshot {
    perf::global()
        .monitor()
        .operation_snapshot(operation)
        .expect("the operation ran")
}

#[performance_monitor("sync.parse")]
fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    let value = text.parse::<u32>()?;
    if value == 0 {
        return Ok(1);
    }
    Ok(value)
}

#[performance_monitor("sync.explode")]
fn explode(really: bool) -> u8 {
    assert!(!really, "exploded");
    1
}

#[test]
fn a_sync_fn_records_success_error_and_panic() {
    snapshotter();
    assert_eq!(parse("7"), Ok(7));
    assert_eq!(parse("0"), Ok(1), "an early return is still a success");
    assert!(parse("x").is_err());
    assert_eq!(explode(false), 1);
    assert!(std::panic::catch_unwind(|| explode(true)).is_err());

    let (statuses, latencies) = recorded("sync.parse");
    assert_eq!(statuses.get("success"), Some(&2));
    assert_eq!(statuses.get("error"), Some(&1));
    assert!(latencies >= 3, "{latencies}");
    let (statuses, _) = recorded("sync.explode");
    assert_eq!(statuses.get("panic"), Some(&1));
    let snap = stats("sync.parse");
    assert_eq!((snap.count, snap.errors), (3, 1));
}

#[performance_monitor("threads.score")]
fn score(n: u64) -> Result<u64, String> {
    if n.is_multiple_of(3) {
        Err(format!("{n} is not scored"))
    } else {
        Ok(n * 2)
    }
}

/// Two threads calling at once, one still running when the other has exited: every call is
/// counted once, by status, in the recorder and in the statistics.
#[test]
fn calls_from_several_threads_are_counted_exactly() {
    snapshotter();
    let calls = |from: u64, n: u64| (from..from + n).filter(|&i| score(i).is_err()).count();
    let errors: usize = std::thread::scope(|s| {
        let first = s.spawn(|| calls(0, 1000));
        let second = s.spawn(|| calls(1000, 777));
        first.join().expect("no panic") + second.join().expect("no panic")
    }) + calls(5000, 10);
    let (statuses, latencies) = recorded("threads.score");
    assert_eq!(errors, 596);
    assert_eq!(statuses.get("error"), Some(&596));
    assert_eq!(statuses.get("success"), Some(&(1787 - 596)));
    assert_eq!(latencies, 1787);
    let snap = stats("threads.score");
    assert_eq!((snap.count, snap.errors), (1787, 596));
}

#[performance_monitor("async.fetch")]
async fn fetch(id: u64) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    if id == 0 {
        Err("no such ad".into())
    } else {
        Ok(format!("ad {id}"))
    }
}

#[performance_monitor("async.slow")]
async fn slow() -> u8 {
    tokio::time::sleep(Duration::from_secs(60)).await;
    1
}

#[tokio::test]
async fn an_async_fn_records_success_error_and_cancellation() {
    snapshotter();
    assert_eq!(fetch(3).await.as_deref(), Ok("ad 3"));
    assert!(fetch(0).await.is_err());
    let cancelled = tokio::time::timeout(Duration::from_millis(5), slow()).await;
    assert!(cancelled.is_err());
    let (statuses, _) = recorded("async.fetch");
    assert_eq!(
        (statuses.get("success"), statuses.get("error")),
        (Some(&1), Some(&1))
    );
    let (statuses, _) = recorded("async.slow");
    assert_eq!(statuses.get("cancelled"), Some(&1));
    assert_eq!(stats("async.slow").cancelled, 1);
}

struct Service {
    calls: u32,
}

trait Lookup {
    async fn lookup(&self, key: &str) -> Option<usize>;
}

impl Lookup for Service {
    #[performance_monitor("method.trait_async")]
    async fn lookup(&self, key: &str) -> Option<usize> {
        Some(key.len() + self.calls as usize)
    }
}

impl Service {
    #[performance_monitor("method.ref")]
    fn peek(&self) -> u32 {
        self.calls
    }

    #[performance_monitor("method.mut")]
    fn bump(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[performance_monitor("method.owned")]
    fn into_calls(self) -> u32 {
        self.calls
    }

    #[performance_monitor]
    fn default_name(&self) {}
}

#[performance_monitor("generic.largest")]
fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    items.iter().copied().fold(None, |best, item| match best {
        Some(best) if best >= item => Some(best),
        _ => Some(item),
    })
}

#[performance_monitor("impl_trait.evens")]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[tokio::test]
async fn methods_generics_and_impl_trait_are_monitored() {
    snapshotter();
    let mut service = Service { calls: 0 };
    assert_eq!(service.bump(), 1);
    assert_eq!(service.peek(), 1);
    assert_eq!(service.lookup("abc").await, Some(4));
    service.default_name();
    assert_eq!(service.into_calls(), 1);
    assert_eq!(largest(&[3, 9, 2]), Some(9));
    assert_eq!(largest(&[1.5, 0.5]), Some(1.5));
    assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
    for operation in [
        "method.mut",
        "method.ref",
        "method.trait_async",
        "method.owned",
        "impl_trait.evens",
    ] {
        assert_eq!(stats(operation).count, 1, "{operation}");
    }
    assert_eq!(
        stats("generic.largest").count,
        2,
        "one call site across monomorphizations"
    );
    assert_eq!(
        stats(concat!(module_path!(), "::default_name")).count,
        1,
        "named after its path"
    );
}

#[tokio::test]
async fn a_context_is_held_across_await_and_can_fail() {
    snapshotter();
    {
        let _scope = performance_context("context.batch");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut scope = performance_context("context.batch");
    scope.fail();
    drop(scope);
    let (statuses, latencies) = recorded("context.batch");
    assert_eq!(
        (statuses.get("success"), statuses.get("error")),
        (Some(&1), Some(&1))
    );
    assert_eq!(latencies, 2);
    assert!(stats("context.batch").max_seconds >= 0.002);
}

#[performance_monitor("isolated.op", optimizer = optimizer)]
fn on_given_optimizer(optimizer: &perf::PerformanceOptimizer) -> u8 {
    let _ = optimizer;
    2
}

#[test]
fn optimizer_argument_records_into_that_instance() {
    let own = perf::PerformanceOptimizer::builder()
        .build()
        .expect("valid");
    assert_eq!(on_given_optimizer(&own), 2);
    assert_eq!(
        own.monitor()
            .operation_snapshot("isolated.op")
            .map(|s| s.count),
        Some(1)
    );
    assert!(
        perf::global()
            .monitor()
            .operation_snapshot("isolated.op")
            .is_none()
    );
    assert_eq!(Status::Cancelled.as_str(), "cancelled");
}

/// A `tracing` subscriber that keeps the name of every span entered, in order.
#[derive(Clone, Default)]
struct EnteredSpans {
    names: std::sync::Arc<Mutex<Vec<&'static str>>>,
    by_id: std::sync::Arc<Mutex<Vec<&'static str>>>,
}

impl EnteredSpans {
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.names.lock().expect("not poisoned"))
    }
}

impl tracing::Subscriber for EnteredSpans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut by_id = self.by_id.lock().expect("not poisoned");
        by_id.push(span.metadata().name());
        tracing::span::Id::from_u64(by_id.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, span: &tracing::span::Id) {
        let name = self.by_id.lock().expect("not poisoned")[span.into_u64() as usize - 1];
        self.names.lock().expect("not poisoned").push(name);
    }
    fn exit(&self, _: &tracing::span::Id) {}
}

#[performance_monitor("profiled.sync", optimizer = optimizer)]
fn profiled_sync(optimizer: &perf::PerformanceOptimizer) -> u8 {
    let _ = optimizer;
    3
}

#[performance_monitor(optimizer = optimizer)]
async fn profiled_async(optimizer: &perf::PerformanceOptimizer) -> u8 {
    let _ = optimizer;
    // Two polls: the span is entered on each.
    tokio::task::yield_now().await;
    4
}

#[test]
fn with_profiling_each_call_runs_in_a_span_named_after_its_operation() {
    let optimizer = perf::PerformanceOptimizer::builder()
        .build()
        .expect("valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let spans = EnteredSpans::default();
    let run = || {
        tracing::subscriber::with_default(spans.clone(), || {
            assert_eq!(profiled_sync(&optimizer), 3);
            assert_eq!(runtime.block_on(profiled_async(&optimizer)), 4);
        })
    };

    run();
    assert_eq!(spans.take(), Vec::<&str>::new(), "off by default: no spans");

    let mut config = (*optimizer.config()).clone();
    config.monitor.profiling_enabled = true;
    optimizer.update_config(config).expect("a hot field");
    run();
    let entered = spans.take();
    assert_eq!(entered.first(), Some(&"profiled.sync"), "{entered:?}");
    // The async call's span is entered on each of its two polls (and, by tracing, on drop).
    let async_entries = &entered[1..];
    assert!(async_entries.len() >= 2, "{entered:?}");
    assert!(
        async_entries
            .iter()
            .all(|name| *name == "monitor::profiled_async"),
        "{entered:?}"
    );
    assert_eq!(
        optimizer
            .monitor()
            .operation_snapshot("monitor::profiled_async")
            .map(|s| s.count),
        Some(2),
        "the metrics are recorded either way"
    );
}

static ORDER_LOADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[performance_monitor("order.monitor_first")]
#[perf::cache_result(ttl = 60)]
fn monitor_written_first(id: u64) -> u64 {
    ORDER_LOADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    id * 2
}

#[perf::cache_result(ttl = 60)]
#[performance_monitor("order.cache_first")]
async fn cache_written_first(id: u64) -> u64 {
    id * 3
}

/// The monitor times every call, hits included, whichever of the two attributes comes first.
#[tokio::test]
async fn the_monitor_times_every_call_of_a_cached_fn_in_either_order() {
    snapshotter();
    for call in 0..10u64 {
        assert_eq!(monitor_written_first(call % 3), (call % 3) * 2);
        assert_eq!(cache_written_first(call % 3).await, (call % 3) * 3);
    }
    assert_eq!(
        ORDER_LOADS.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three misses, seven hits"
    );
    for operation in ["order.monitor_first", "order.cache_first"] {
        assert_eq!(stats(operation).count, 10, "{operation}");
        let (statuses, _) = recorded(operation);
        assert_eq!(statuses.get("success"), Some(&10), "{operation}");
    }
}

/// The shape of an axum handler: a `Result` around an `impl Trait`, with `?` in the body.
trait IntoReply {
    fn into_reply(self) -> String;
}

impl IntoReply for u32 {
    fn into_reply(self) -> String {
        format!("reply {self}")
    }
}

#[derive(Debug, PartialEq)]
struct HttpStatus(u16);

impl From<std::num::ParseIntError> for HttpStatus {
    fn from(_: std::num::ParseIntError) -> Self {
        HttpStatus(400)
    }
}

#[performance_monitor("handler.shape")]
async fn handler(query: &str) -> Result<impl IntoReply, HttpStatus> {
    let id: u32 = query.parse()?;
    if id == 0 {
        return Err(HttpStatus(404));
    }
    Ok(id)
}

#[performance_monitor("handler.shape_sync")]
fn sync_handler(query: &str) -> Result<(impl IntoReply, Vec<impl IntoReply>), HttpStatus> {
    let id: u32 = query.parse()?;
    Ok((id, vec![id]))
}

#[tokio::test]
async fn a_handler_returning_a_result_of_impl_trait_is_monitored() {
    snapshotter();
    assert_eq!(
        handler("7").await.map(IntoReply::into_reply),
        Ok("reply 7".to_string())
    );
    assert_eq!(handler("0").await.err(), Some(HttpStatus(404)));
    assert_eq!(handler("x").await.err(), Some(HttpStatus(400)));
    assert!(sync_handler("3").is_ok());
    let (statuses, _) = recorded("handler.shape");
    assert_eq!(statuses.get("success"), Some(&1));
    assert_eq!(statuses.get("error"), Some(&2));
    assert_eq!(stats("handler.shape_sync").count, 1);
}
