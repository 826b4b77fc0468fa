//! With `profiling_enabled`, cache loads, remote-tier calls, managed tasks and timed queries
//! run in `tracing` spans; off, none is made.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use perf::{PerformanceOptimizer, RemoteError, RemoteTier, Tier, cache::BoxFuture};
use tracing::{
    field::{Field, Visit},
    span,
};

/// A span as the subscriber saw it: its name and its fields, recorded values included.
#[derive(Debug, Clone)]
struct SeenSpan {
    name: &'static str,
    fields: HashMap<&'static str, String>,
}

impl Visit for SeenSpan {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields.insert(field.name(), format!("{value:?}"));
    }
}

/// A subscriber that keeps every span, and for each event the name of the span it was
/// emitted in (the innermost entered).
#[derive(Clone, Default)]
struct Spans {
    spans: Arc<Mutex<Vec<SeenSpan>>>,
    stack: Arc<Mutex<Vec<usize>>>,
    events_in: Arc<Mutex<Vec<&'static str>>>,
}

impl Spans {
    fn take(&self) -> Vec<SeenSpan> {
        std::mem::take(&mut *self.spans.lock().expect("not poisoned"))
    }

    fn named(spans: &[SeenSpan], name: &str) -> Vec<SeenSpan> {
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &span::Attributes<'_>) -> span::Id {
        let mut seen = SeenSpan {
            name: attributes.metadata().name(),
            fields: HashMap::new(),
        };
        attributes.record(&mut seen);
        let mut spans = self.spans.lock().expect("not poisoned");
        spans.push(seen);
        span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &span::Id, values: &span::Record<'_>) {
        let mut spans = self.spans.lock().expect("not poisoned");
        if let Some(seen) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(seen);
        }
    }
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        let stack = self.stack.lock().expect("not poisoned");
        let spans = self.spans.lock().expect("not poisoned");
        let name = stack.last().map_or("(none)", |&index| spans[index].name);
        self.events_in.lock().expect("not poisoned").push(name);
    }
    fn enter(&self, id: &span::Id) {
        let index = id.into_u64() as usize - 1;
        self.stack.lock().expect("not poisoned").push(index);
    }
    fn exit(&self, _: &span::Id) {
        self.stack.lock().expect("not poisoned").pop();
    }
}

/// A remote tier in memory, so that the cache makes remote calls without a server.
#[derive(Debug, Default)]
struct MemoryRemote(Mutex<HashMap<String, Vec<u8>>>);

impl RemoteTier for MemoryRemote {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move { Ok(self.0.lock().expect("not poisoned").get(key).cloned()) })
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let mut map = self.0.lock().expect("not poisoned");
            map.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.0.lock().expect("not poisoned").remove(key);
            Ok(())
        })
    }
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let mut map = self.0.lock().expect("not poisoned");
            let before = map.len();
            map.retain(|key, _| !key.starts_with(prefix));
            Ok((before - map.len()) as u64)
        })
    }
    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            self.0.lock().expect("not poisoned").clear();
            Ok(())
        })
    }
}

/// One of each operation: a cache load through every tier, a task, a timed query.
async fn one_of_each(optimizer: &PerformanceOptimizer, key: &str) {
    let loaded = optimizer
        .cache()
        .get_or_load(key, Tier::Redis, None, || async {
            tracing::info!("loading");
            Ok::<_, perf::Error>(7u32)
        })
        .await
        .expect("loads");
    assert_eq!(*loaded, 7);
    let task = optimizer
        .tasks()
        .submit(async { Ok::<_, perf::Error>(1u8) })
        .await
        .expect("a slot");
    assert!(matches!(task.await, perf::tasks::TaskOutcome::Completed(1)));
    let mut timer = optimizer.query().query_timer("select_user");
    timer.rows(3);
    drop(timer);
}

#[test]
fn with_profiling_loads_remote_calls_tasks_and_queries_run_in_spans() {
    let optimizer = PerformanceOptimizer::builder()
        .remote_tier(Arc::new(MemoryRemote::default()))
        .build()
        .expect("valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());

    runtime.block_on(one_of_each(&optimizer, "user:0"));
    let off = spans.take();
    assert!(
        off.iter().all(|s| !s.name.starts_with("perf.")),
        "off by default: no perf spans, saw {off:?}"
    );

    let mut config = (*optimizer.config()).clone();
    config.monitor.profiling_enabled = true;
    optimizer.update_config(config).expect("a hot field");
    runtime.block_on(one_of_each(&optimizer, "user:1"));
    let on = spans.take();

    let loads = Spans::named(&on, "perf.cache.load");
    assert_eq!(loads.len(), 1, "{on:?}");
    assert_eq!(loads[0].fields["key"], "\"user:1\"");
    assert_eq!(
        spans.events_in.lock().expect("not poisoned").last(),
        Some(&"perf.cache.load"),
        "the loader runs inside the load's span"
    );

    let remote: Vec<_> = Spans::named(&on, "perf.cache.remote")
        .into_iter()
        .map(|s| (s.fields["op"].clone(), s.fields["key"].clone()))
        .collect();
    assert!(
        remote.contains(&("\"get\"".into(), "\"user:1\"".into())),
        "the remote lookup before the load: {remote:?}"
    );
    assert!(
        remote.contains(&("\"set\"".into(), "\"user:1\"".into())),
        "the remote write after it: {remote:?}"
    );

    let tasks = Spans::named(&on, "perf.task");
    assert_eq!(tasks.len(), 1, "{on:?}");
    assert!(tasks[0].fields.contains_key("id"), "{tasks:?}");

    let queries = Spans::named(&on, "perf.query");
    assert_eq!(queries.len(), 1, "{on:?}");
    assert_eq!(queries[0].fields["query_type"], "\"select_user\"");
    assert_eq!(queries[0].fields["rows"], "3");
    assert_eq!(queries[0].fields["failed"], "false");
}

#[test]
fn long_keys_are_cut_in_spans() {
    let mut config = perf::PerformanceConfig::default();
    config.monitor.profiling_enabled = true;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let key = "k".repeat(500);
    runtime.block_on(async {
        let loaded = optimizer
            .cache()
            .get_or_load(&key, Tier::L1, None, || async { Ok::<_, perf::Error>(1u8) })
            .await
            .expect("loads");
        assert_eq!(*loaded, 1);
    });
    let loads = Spans::named(&spans.take(), "perf.cache.load");
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].fields["key"], format!("{:?}", "k".repeat(64)));
}
