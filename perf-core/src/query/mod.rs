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

mod shape;
mod stats;

use std::{
    collections::HashMap,
    fmt::Write as _,
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::{Mutex, RwLock};
use quick_cache::sync::Cache;
use serde::{Serialize, Serializer};

use self::stats::{ShapeStats, SlowLog};
pub use self::{
    shape::Shape,
    stats::{QueryStats, SlowQuery},
};
use crate::{
    cache::{LoadOptions, Loaded, LoaderError, MultiLevelCache, SharedValue, Tier, function_key},
    config::PerformanceConfig,
    metrics::{DATABASE_QUERY_TIME_SECONDS, labels},
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
    slow_threshold: Duration,
    shapes: Cache<Box<str>, Arc<Shape>>,
    stats: Mutex<ShapeStats>,
    slow: Mutex<SlowLog>,
    histograms: RwLock<HashMap<Box<str>, metrics::Histogram>>,
    cache: MultiLevelCache,
}

impl std::fmt::Debug for QueryOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOptimizer")
            .field("slow_threshold", &self.inner.slow_threshold)
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
}

impl QueryOptimizer {
    /// Statistics per shape for at most `query_stats_max` shapes; queries over
    /// `slow_query_threshold` logged; results cached in `cache`.
    pub fn new(config: &PerformanceConfig, cache: MultiLevelCache) -> Self {
        Self {
            inner: Arc::new(Inner {
                slow_threshold: config.query.slow_threshold,
                shapes: Cache::new(MEMOIZED_TEXTS),
                stats: Mutex::new(ShapeStats::new(
                    usize::try_from(config.query.stats_max).unwrap_or(usize::MAX),
                )),
                slow: Mutex::new(SlowLog::new(SLOW_LOG_CAPACITY)),
                histograms: RwLock::new(HashMap::new()),
                cache,
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

    /// Starts timing a query; the guard records `database_query_time_seconds{query_type}` when
    /// dropped, and per-shape statistics when given the SQL.
    pub fn query_timer(&self, query_type: &str) -> QueryTimer<'_> {
        QueryTimer {
            optimizer: self,
            query_type: query_type.to_owned(),
            shape: None,
            rows: None,
            failed: false,
            started: Instant::now(),
        }
    }

    /// Runs `query`, recording its time under `query_type` and its statistics under the shape
    /// of `sql`; an `Err` counts as an error.
    pub async fn timed<T, E, Fut>(&self, query_type: &str, sql: &str, query: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut timer = self.query_timer(query_type).sql(sql);
        let result = query.await;
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
        self.histogram(query_type).record(elapsed.as_secs_f64());
        let Some(shape) = shape else { return };
        self.inner
            .stats
            .lock()
            .record(shape, query_type, elapsed, failed, rows);
        if elapsed >= self.inner.slow_threshold {
            tracing::warn!(
                fingerprint = shape.fingerprint,
                query = &*shape.normalized,
                seconds = elapsed.as_secs_f64(),
                "slow query"
            );
            self.inner.slow.lock().push(SlowQuery {
                fingerprint: shape.fingerprint,
                normalized: Arc::clone(&shape.normalized),
                query_type: query_type.to_owned(),
                seconds: elapsed.as_secs_f64(),
                at: SystemTime::now(),
            });
        }
    }

    fn histogram(&self, query_type: &str) -> metrics::Histogram {
        if let Some(histogram) = self.inner.histograms.read().get(query_type) {
            return histogram.clone();
        }
        let histogram = metrics::histogram!(
            crate::metrics::name(DATABASE_QUERY_TIME_SECONDS),
            labels::QUERY_TYPE => query_type.to_owned()
        );
        self.inner
            .histograms
            .write()
            .insert(query_type.into(), histogram.clone());
        histogram
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
        }
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
        self.inner
            .cache
            .get_or_load_with(&key, &options, loader)
            .await
    }

    /// The cached rows of `sql` with `params`, if any (the seed's `get_cached_query`).
    pub async fn get_cached_query<T: SharedValue, P: Serialize + ?Sized>(
        &self,
        sql: &str,
        params: &P,
    ) -> Result<Option<Arc<T>>, crate::Error> {
        let key = self.result_key(sql, params).await;
        self.inner.cache.get(&key, Tier::Redis).await
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
    query_type: String,
    shape: Option<Arc<Shape>>,
    rows: Option<u64>,
    failed: bool,
    started: Instant,
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
}

impl Drop for QueryTimer<'_> {
    fn drop(&mut self) {
        self.optimizer.record_shape(
            &self.query_type,
            self.shape.as_deref(),
            self.started.elapsed(),
            self.failed || std::thread::panicking(),
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
