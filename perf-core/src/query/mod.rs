//! The query optimizer: times every query, groups queries by shape as pg_stat_statements
//! does, logs the slow ones, and caches query results in the multi-level cache.
//!
//! A query's shape ([`Shape`]) is its SQL with literals as placeholders, lexed by sqlparser's
//! tokenizer (the `sql` feature; without it, the query's text as given); it is computed once
//! per distinct SQL text and then looked up, so a repeated query costs one hash lookup before
//! its statistics are updated.
//!
//! Cached results are keyed by their SQL text, their parameters and the current *generation* of
//! every table the query touches. A table's generation is a random id kept in the cache
//! beside the results (in Redis too, when there is a Redis tier), and `invalidate_table`
//! replaces it: every result that read the table, on any instance, is then under a key no
//! one asks for, and ages out. A generation that was evicted or expired is replaced by a new
//! one, which only costs misses.

mod lookups;
mod pool;
mod shape;
#[cfg(test)]
mod shape_props;
mod stats;

use std::{
    collections::HashMap,
    fmt::Write as _,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use parking_lot::{Mutex, RwLock};
use quick_cache::sync::Cache;
use serde::{Serialize, Serializer};
use tracing::{Instrument, Span};

#[cfg(feature = "sqlx")]
pub use self::pool::WatchedPool;
use self::{
    lookups::Lookups,
    pool::Pools,
    stats::{ShapeStats, SlowLog},
};
pub use self::{
    pool::{NamedPoolStats, PoolSource, PoolStats},
    shape::Shape,
    stats::{QueryStats, SlowQuery},
};
use crate::{
    cache::{LoadOptions, Loaded, LoaderError, MultiLevelCache, SharedValue, Tier, function_key},
    config::PerformanceConfig,
    metrics::{DATABASE_QUERY_TIME_SECONDS, DATABASE_SLOW_QUERIES_TOTAL, labels},
    profiling::Profiling,
};

/// Distinct SQL texts whose shapes are remembered.
const MEMOIZED_TEXTS: usize = 10_000;
/// Slow queries kept in the log.
const SLOW_LOG_CAPACITY: usize = 100;
/// Entries in each list of [`QueryReport`].
const REPORT_TOP: usize = 10;

/// Times queries and keeps their statistics. Cloning is cheap and shares it.
#[derive(Clone)]
pub struct QueryOptimizer {
    inner: Arc<Inner>,
}

struct Inner {
    /// `slow_query_threshold` in nanoseconds: changeable while queries run.
    slow_threshold_nanos: AtomicU64,
    shapes: Cache<Box<str>, Arc<Shape>>,
    stats: Mutex<ShapeStats>,
    slow: Mutex<SlowLog>,
    /// Per query type: its histogram, and the shape its timings without SQL are kept under.
    query_types: RwLock<HashMap<Box<str>, QueryType>>,
    /// `profiling_enabled`, the cache's (its optimizer's): query timers hold spans.
    profiling: Profiling,
    cache: MultiLevelCache,
    /// The result cache's hits and misses.
    lookups: Arc<Lookups>,
    /// The connection pools reported on.
    pools: Arc<Pools>,
}

impl std::fmt::Debug for QueryOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOptimizer")
            .field("slow_threshold", &self.slow_threshold())
            .finish_non_exhaustive()
    }
}

/// What [`QueryOptimizer::analyze`] finds. Each list holds at most 10 shapes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryReport {
    /// Shapes with statistics now (at most `query_stats_max`).
    pub shapes: usize,
    /// Shapes whose statistics were dropped to make room for new ones, since the last
    /// [`clear`](QueryOptimizer::clear).
    pub evictions: u64,
    /// The shapes with the most time spent in all, most first.
    pub by_total_time: Vec<QueryStats>,
    /// The shapes with the highest mean time, slowest first.
    pub slowest: Vec<QueryStats>,
    /// The shapes with failed queries, most failures first.
    pub most_errors: Vec<QueryStats>,
    /// The slow-query log (its last 100 entries), newest first.
    pub slow_queries: Vec<SlowQuery>,
    /// The watched connection pools now ([`watch_pool`](QueryOptimizer::watch_pool)).
    pub pools: Vec<NamedPoolStats>,
}

impl QueryOptimizer {
    /// Statistics per shape for at most `query_stats_max` shapes; queries over
    /// `slow_query_threshold` logged; results cached in `cache`.
    pub fn new(config: &PerformanceConfig, cache: MultiLevelCache) -> Self {
        let lookups = Arc::new(Lookups::default());
        let weak: std::sync::Weak<dyn crate::metrics::Batched> =
            Arc::downgrade(&lookups) as std::sync::Weak<Lookups>;
        crate::metrics::register_batched(weak);
        let pools = Arc::new(Pools::default());
        pool::register(&pools);
        Self {
            inner: Arc::new(Inner {
                slow_threshold_nanos: AtomicU64::new(nanos(config.query.slow_threshold)),
                shapes: Cache::new(MEMOIZED_TEXTS),
                stats: Mutex::new(ShapeStats::new(
                    usize::try_from(config.query.stats_max).unwrap_or(usize::MAX),
                )),
                slow: Mutex::new(SlowLog::new(SLOW_LOG_CAPACITY)),
                query_types: RwLock::new(HashMap::new()),
                profiling: cache.engine().profiling().clone(),
                cache,
                lookups,
                pools,
            }),
        }
    }

    /// The shape of `sql`, computed once per distinct text.
    pub fn shape(&self, sql: &str) -> Arc<Shape> {
        if let Some(shape) = self.inner.shapes.get(sql) {
            return shape;
        }
        let shape = Arc::new(shape::shape_of(sql));
        self.inner.shapes.insert(sql.into(), Arc::clone(&shape));
        shape
    }

    /// Queries taking at least this long are slow (`slow_query_threshold`).
    pub fn slow_threshold(&self) -> Duration {
        Duration::from_nanos(self.inner.slow_threshold_nanos.load(Ordering::Relaxed))
    }

    /// Changes the slow-query threshold, for queries that end from now on.
    pub fn set_slow_threshold(&self, threshold: Duration) {
        (self.inner.slow_threshold_nanos).store(nanos(threshold), Ordering::Relaxed);
    }

    /// Starts timing a query; the guard records `database_query_time_seconds{query_type}` when
    /// dropped, and statistics under the shape of its SQL when given it
    /// ([`QueryTimer::sql`]), else under `query_type` itself: either way a slow one is
    /// logged and counted. Time is tokio's clock, so paused time moves it in tests. With
    /// `profiling_enabled` it also holds a `perf.query` span for its life
    /// ([`QueryTimer::span`]).
    pub fn query_timer(&self, query_type: &str) -> QueryTimer<'_> {
        let span = self.inner.profiling.span(|| {
            tracing::info_span!(
                "perf.query",
                query_type,
                rows = tracing::field::Empty,
                failed = tracing::field::Empty
            )
        });
        QueryTimer {
            optimizer: self,
            span,
            query_type: query_type.to_owned(),
            shape: None,
            rows: None,
            failed: false,
            started: tokio::time::Instant::now(),
        }
    }

    /// Runs `query`, recording its time under `query_type` and its statistics under the shape
    /// of `sql`; an `Err` counts as an error.
    pub async fn timed<T, E, Fut>(&self, query_type: &str, sql: &str, query: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut timer = self.query_timer(query_type).sql(sql);
        let result = query.instrument(timer.span().clone()).await;
        if result.is_err() {
            timer.fail();
        }
        result
    }

    /// Records one query that took `elapsed`.
    pub fn record(
        &self,
        query_type: &str,
        sql: Option<&str>,
        elapsed: Duration,
        failed: bool,
        rows: Option<u64>,
    ) {
        let shape = sql.map(|sql| self.shape(sql));
        self.record_shape(query_type, shape.as_deref(), elapsed, failed, rows);
    }

    fn record_shape(
        &self,
        query_type: &str,
        shape: Option<&Shape>,
        elapsed: Duration,
        failed: bool,
        rows: Option<u64>,
    ) {
        let named = self.query_type(query_type);
        named.histogram.record(elapsed.as_secs_f64());
        // Timed without its SQL: kept under its query type, so that it is still counted.
        let shape = shape.unwrap_or(&named.shape);
        self.inner
            .stats
            .lock()
            .record(shape, query_type, elapsed, failed, rows);
        if elapsed >= self.slow_threshold() {
            tracing::warn!(
                fingerprint = shape.fingerprint,
                query = &*shape.normalized,
                seconds = elapsed.as_secs_f64(),
                "slow query"
            );
            named.slow.increment(1);
            self.inner.slow.lock().push(SlowQuery {
                fingerprint: shape.fingerprint,
                normalized: Arc::clone(&shape.normalized),
                query_type: query_type.to_owned(),
                seconds: elapsed.as_secs_f64(),
                at: SystemTime::now(),
            });
        }
    }

    fn query_type(&self, query_type: &str) -> QueryType {
        if let Some(known) = self.inner.query_types.read().get(query_type) {
            return known.clone();
        }
        let known = QueryType {
            histogram: metrics::histogram!(
                crate::metrics::name(DATABASE_QUERY_TIME_SECONDS),
                labels::QUERY_TYPE => query_type.to_owned()
            ),
            slow: metrics::counter!(
                crate::metrics::name(DATABASE_SLOW_QUERIES_TOTAL),
                labels::QUERY_TYPE => query_type.to_owned()
            ),
            shape: Arc::new(Shape::named(query_type)),
        };
        // The type's slow-query count starts at 0, so that it is charted before the first.
        known.slow.increment(0);
        self.inner
            .query_types
            .write()
            .insert(query_type.into(), known.clone());
        known
    }

    /// One shape's statistics.
    pub fn stats_for(&self, sql: &str) -> Option<QueryStats> {
        let fingerprint = self.shape(sql).fingerprint;
        self.inner.stats.lock().get(fingerprint)
    }

    /// Every shape's statistics, most total time first.
    pub fn stats(&self) -> Vec<QueryStats> {
        let mut all = self.inner.stats.lock().all();
        all.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        all
    }

    /// The recent slow queries, newest first.
    pub fn slow_queries(&self) -> Vec<SlowQuery> {
        self.inner.slow.lock().recent()
    }

    /// The shapes taking the most time in all, the slowest on average, the most failing, and
    /// the recent slow queries.
    pub fn analyze(&self) -> QueryReport {
        let (all, evictions) = {
            let stats = self.inner.stats.lock();
            (stats.all(), stats.evictions)
        };
        let top = |mut list: Vec<QueryStats>, key: fn(&QueryStats) -> f64| {
            list.sort_by(|a, b| key(b).total_cmp(&key(a)));
            list.truncate(REPORT_TOP);
            list
        };
        let failing: Vec<QueryStats> = all.iter().filter(|s| s.errors > 0).cloned().collect();
        QueryReport {
            shapes: all.len(),
            evictions,
            by_total_time: top(all.clone(), |s| s.total_seconds),
            slowest: top(all, |s| s.mean_seconds),
            most_errors: top(failing, |s| s.errors as f64),
            slow_queries: self.slow_queries(),
            pools: self.inner.pools.stats(),
        }
    }

    /// Reports on the connection pool `source` under `name` (replacing a pool watched under
    /// that name), in [`analyze`](Self::analyze) (`GET /performance/database/stats`) and as
    /// the `database_pool_*` metrics, for as long as `source` lives: the optimizer holds it
    /// weakly. Errs on a 17th name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use perf_core::query::{PoolSource, PoolStats};
    ///
    /// struct Fixed;
    /// impl PoolSource for Fixed {
    ///     fn pool_stats(&self) -> PoolStats {
    ///         PoolStats { max_size: 4, size: 3, idle: 1, in_use: 2, ..PoolStats::default() }
    ///     }
    /// }
    ///
    /// let optimizer = perf_core::PerformanceOptimizer::builder().build()?;
    /// let pool: Arc<dyn PoolSource> = Arc::new(Fixed);
    /// optimizer.query().watch_pool("primary", &pool)?;
    /// let report = optimizer.query().analyze();
    /// assert_eq!((report.pools[0].name.as_str(), report.pools[0].stats.in_use), ("primary", 2));
    /// # Ok::<_, perf_core::Error>(())
    /// ```
    pub fn watch_pool(&self, name: &str, source: &Arc<dyn PoolSource>) -> Result<(), crate::Error> {
        self.inner.pools.watch(name, source)
    }

    /// The watched connection pools now.
    pub fn pool_stats(&self) -> Vec<NamedPoolStats> {
        self.inner.pools.stats()
    }

    /// Forgets every statistic and slow query.
    pub fn clear(&self) {
        self.inner.stats.lock().clear();
        self.inner.slow.lock().clear();
    }

    // ----- the query result cache -----

    /// The rows of `sql` with `params`, from the cache (every tier, Redis included when
    /// there is one), else from `loader`, then cached for `ttl` (default `cache_ttl`).
    /// Concurrent misses run the loader once.
    pub async fn cached_query<T, P, E, F, Fut>(
        &self,
        sql: &str,
        params: &P,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        P: Serialize + ?Sized,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let options = LoadOptions::new(Tier::Redis).ttl_or(ttl);
        self.cached_query_with(sql, params, &options, loader)
            .await
            .map(|loaded| loaded.value)
    }

    /// [`cached_query`](Self::cached_query) with per-call fail-safe, timeouts, refresh-ahead
    /// and jitter ([`LoadOptions`]; its tier is the query cache's, the shared one), telling
    /// whether the rows are fresh or stale.
    pub async fn cached_query_with<T, P, E, F, Fut>(
        &self,
        sql: &str,
        params: &P,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        P: Serialize + ?Sized,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.result_key(sql, params).await;
        let options = options.in_tier(Tier::Redis);
        // A hit is a call that did not run the query: cached, or another caller's load.
        let ran = AtomicBool::new(false);
        let loaded = self
            .inner
            .cache
            .get_or_load_with(&key, &options, || {
                ran.store(true, Ordering::Relaxed);
                loader()
            })
            .await;
        self.inner.lookups.record(!ran.load(Ordering::Relaxed));
        loaded
    }

    /// The cached rows of `sql` with `params`, if any (the seed's `get_cached_query`).
    pub async fn get_cached_query<T: SharedValue, P: Serialize + ?Sized>(
        &self,
        sql: &str,
        params: &P,
    ) -> Result<Option<Arc<T>>, crate::Error> {
        let key = self.result_key(sql, params).await;
        let found = self.inner.cache.get(&key, Tier::Redis).await;
        if let Ok(found) = &found {
            self.inner.lookups.record(found.is_some());
        }
        found
    }

    /// The result cache's `(hits, misses)` since this optimizer was made: lookups answered
    /// without running the query, and the others (`query_cache_hits_total` and
    /// `query_cache_misses_total` publish the same counts).
    pub fn result_cache_counts(&self) -> (u64, u64) {
        self.inner.lookups.counts()
    }

    /// Caches `rows` as the result of `sql` with `params` (the seed's `cache_query_result`).
    pub async fn cache_query_result<T: SharedValue, P: Serialize + ?Sized>(
        &self,
        sql: &str,
        params: &P,
        rows: T,
        ttl: Option<Duration>,
    ) -> Result<(), crate::Error> {
        let key = self.result_key(sql, params).await;
        self.inner.cache.set(&key, rows, Tier::Redis, ttl).await
    }

    /// Drops every cached result of a query that reads or writes `table` (names compare
    /// without case), on every instance sharing the Redis tier: the table gets a new
    /// generation. The write reaches the other instances as any cache write does.
    ///
    /// While the Redis tier is unavailable this still returns `Ok`: this instance uses the new
    /// generation at once, and the tier drops the old one in Redis and on every instance once
    /// Redis answers again. A caller whose database write committed can report success.
    ///
    /// Without the `sql` feature, which cannot tell which tables a query names, this drops
    /// every cached query result. (Instances sharing a Redis tier should agree on `sql`.)
    pub async fn invalidate_table(&self, table: &str) -> Result<(), crate::Error> {
        let table = if cfg!(feature = "sql") {
            table.to_lowercase()
        } else {
            ANY_TABLE.to_owned()
        };
        self.inner.cache.invalidate_tag(&table_tag(&table)).await
    }

    /// Drops every cached query result, on every instance sharing the Redis tier; returns how
    /// many local entries went.
    pub async fn clear_cached_results(&self) -> Result<u64, crate::Error> {
        self.inner.cache.invalidate_prefix(RESULT_PREFIX).await
    }

    /// The result's key: its shape, its exact text, the generation of each table it touches,
    /// its parameters. The text and not only the shape: the shape writes literals as `?`, so
    /// `WHERE id = 1` and `WHERE id = 2` share one, and lower-cases names, which some
    /// databases (MySQL's table names on Linux) tell apart.
    async fn result_key<P: Serialize + ?Sized>(&self, sql: &str, params: &P) -> String {
        let shape = self.shape(sql);
        let text = xxhash_rust::xxh3::xxh3_128(sql.as_bytes());
        let mut prefix = format!("{RESULT_PREFIX}{:016x}:{text:032x}", shape.fingerprint);
        for table in result_tables(&shape) {
            let generation = self
                .inner
                .cache
                .engine()
                .tag_generation(&table_tag(table))
                .await;
            let _ = write!(prefix, ":{generation:016x}");
        }
        function_key(&prefix, params)
    }
}

/// What each query type keeps: its histogram and slow-query counter, and the shape of its
/// queries timed without SQL.
#[derive(Clone)]
struct QueryType {
    histogram: metrics::Histogram,
    slow: metrics::Counter,
    shape: Arc<Shape>,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Every cached query result's key starts with this.
const RESULT_PREFIX: &str = "query:";

/// Without the `sql` feature: the one table every query may read, whose generation keys
/// every cached result and which invalidating any table replaces.
const ANY_TABLE: &str = "*";

/// The tables whose generations key the cached results of `shape`: those it names.
#[cfg(feature = "sql")]
fn result_tables(shape: &Shape) -> impl Iterator<Item = &str> {
    shape.tables.iter().map(String::as_str)
}

/// Without the `sql` feature a shape names no tables: its results are kept under
/// [`ANY_TABLE`]'s generation.
#[cfg(not(feature = "sql"))]
fn result_tables(_: &Shape) -> impl Iterator<Item = &str> {
    std::iter::once(ANY_TABLE)
}

/// The key of `table`'s generation.
/// The tag of a table's cached results (see `cache/tags.rs`).
fn table_tag(table: &str) -> String {
    format!("table:{table}")
}

/// Times one query; records when dropped. See [`QueryOptimizer::query_timer`].
#[must_use = "the query is timed until the guard drops"]
pub struct QueryTimer<'a> {
    optimizer: &'a QueryOptimizer,
    /// Closed after the timer records, so that the span's time is the query's.
    span: Span,
    query_type: String,
    shape: Option<Arc<Shape>>,
    rows: Option<u64>,
    failed: bool,
    started: tokio::time::Instant,
}

impl std::fmt::Debug for QueryTimer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryTimer")
            .field("query_type", &self.query_type)
            .field("shape", &self.shape.as_ref().map(|s| &s.normalized))
            .finish_non_exhaustive()
    }
}

impl QueryTimer<'_> {
    /// The SQL being timed, for per-shape statistics.
    pub fn sql(mut self, sql: &str) -> Self {
        self.shape = Some(self.optimizer.shape(sql));
        self
    }

    /// Rows the query returned or affected.
    pub fn rows(&mut self, rows: u64) {
        self.rows = Some(rows);
    }

    /// Counts the query as an error.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// The `perf.query` span (fields `query_type`, `rows`, `failed`), open until the timer
    /// drops; a disabled span unless `profiling_enabled`. Run the query in it to see the
    /// query's own spans beneath: `query.instrument(timer.span().clone())`.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

impl Drop for QueryTimer<'_> {
    fn drop(&mut self) {
        let failed = self.failed || std::thread::panicking();
        if !self.span.is_disabled() {
            self.span.record("failed", failed);
            if let Some(rows) = self.rows {
                self.span.record("rows", rows);
            }
        }
        self.optimizer.record_shape(
            &self.query_type,
            self.shape.as_deref(),
            self.started.elapsed(),
            failed,
            self.rows,
        );
    }
}

/// System times as seconds since the Unix epoch, in reports.
pub(crate) fn serialize_system_time<S: Serializer>(
    at: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    serializer.serialize_f64(seconds)
}

#[cfg(all(test, not(feature = "sql")))]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Without the tokenizer no query names a table, so invalidating any table must drop
    /// every cached result: never a stale one.
    #[tokio::test]
    async fn without_the_tokenizer_invalidating_any_table_drops_every_result() {
        let config = PerformanceConfig::default();
        let cache = MultiLevelCache::new(&config).expect("valid");
        let query = QueryOptimizer::new(&config, cache);
        let loads = AtomicU32::new(0);
        let read = async |sql: &str| {
            query
                .cached_query(sql, &(), None, || async {
                    Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .expect("loaded")
        };
        let ads = "SELECT title FROM ads";
        let clicks = "SELECT count(*) FROM clicks";
        assert_eq!((*read(ads).await, *read(clicks).await), (0, 1));
        assert_eq!((*read(ads).await, *read(clicks).await), (0, 1), "cached");
        assert_eq!(
            *read("select title from ads").await,
            2,
            "another text, another entry"
        );
        query
            .invalidate_table("campaigns")
            .await
            .expect("invalidated");
        assert_eq!((*read(ads).await, *read(clicks).await), (3, 4));
    }
}

#[cfg(test)]
mod timer_tests {
    use super::*;

    /// The seed's `with query_timer("ads_query")`: no SQL, and still kept and logged when slow,
    /// under its name.
    #[tokio::test(start_paused = true)]
    async fn a_query_timed_by_name_alone_counts_as_slow() {
        let mut config = PerformanceConfig::default();
        config.query.slow_threshold = Duration::from_millis(500);
        let query = QueryOptimizer::new(&config, MultiLevelCache::new(&config).expect("valid"));
        {
            let _fast = query.query_timer("ads_query");
            tokio::time::advance(Duration::from_millis(499)).await;
        }
        assert!(query.slow_queries().is_empty(), "under the threshold");
        {
            let _slow = query.query_timer("ads_query");
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        let logged = query.slow_queries();
        assert_eq!(logged.len(), 1);
        assert_eq!(&*logged[0].normalized, "ads_query");
        assert_eq!(logged[0].query_type, "ads_query");
        assert_eq!(logged[0].seconds, 2.0);
        let stats = query.stats();
        assert_eq!(stats.len(), 1, "one entry, keyed by the name");
        assert_eq!((&*stats[0].normalized, stats[0].calls), ("ads_query", 2));
        assert_eq!(stats[0].fingerprint, logged[0].fingerprint);

        query.set_slow_threshold(Duration::from_millis(400));
        {
            let _slow = query.query_timer("ads_query");
            tokio::time::advance(Duration::from_millis(450)).await;
        }
        assert_eq!(query.slow_queries().len(), 2, "the new threshold applies");
    }

    /// A name and a query's text are never one shape, whatever the name.
    #[test]
    fn a_name_is_not_the_shape_of_the_same_text() {
        let config = PerformanceConfig::default();
        let query = QueryOptimizer::new(&config, MultiLevelCache::new(&config).expect("valid"));
        let sql = query.shape("select 1");
        let named = Shape::named(&sql.normalized);
        assert_ne!(named.fingerprint, sql.fingerprint);
    }
}
