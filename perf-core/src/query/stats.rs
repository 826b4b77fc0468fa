//! Per-shape statistics, kept as pg_stat_statements keeps them, and the slow-query log.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::shape::Shape;
use crate::monitor::{BUCKETS, bucket_of, quantile_seconds};

/// A fingerprint as a JSON string: above 2^53 a number loses digits in JavaScript and jq.
fn fingerprint_string<S: serde::Serializer>(fingerprint: &u64, out: S) -> Result<S::Ok, S::Error> {
    out.collect_str(fingerprint)
}

/// One shape's statistics, as pg_stat_statements keeps them, since the shape was first
/// seen (or since [`QueryOptimizer::clear`](super::QueryOptimizer::clear)). Times are in
/// seconds. Percentiles are the upper bounds of histogram buckets (within 25% above the true
/// value), never above `max_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryStats {
    /// The shape's [`fingerprint`](super::Shape::fingerprint); a decimal string in JSON,
    /// since JavaScript numbers lose digits above 2^53.
    #[serde(serialize_with = "fingerprint_string")]
    pub fingerprint: u64,
    /// The shape's normalized SQL (literals as `?`).
    pub normalized: Arc<str>,
    /// The `query_type` label of the shape's first recorded call.
    pub query_type: String,
    /// Queries of this shape recorded, failed ones included.
    pub calls: u64,
    /// Queries counted as failed: an `Err` from [`timed`](super::QueryOptimizer::timed), a
    /// [`fail`](super::QueryTimer::fail)ed timer, a panic while timed, or `failed` passed to
    /// [`record`](super::QueryOptimizer::record).
    pub errors: u64,
    /// Rows returned or affected, where the caller gave them.
    pub rows: u64,
    /// Time spent in all calls.
    pub total_seconds: f64,
    /// The fastest call; 0 before any call.
    pub min_seconds: f64,
    /// The slowest call.
    pub max_seconds: f64,
    /// The mean call time.
    pub mean_seconds: f64,
    /// The population standard deviation of call times.
    pub stddev_seconds: f64,
    /// The median call time.
    pub p50_seconds: f64,
    /// The 95th percentile of call times.
    pub p95_seconds: f64,
    /// The 99th percentile of call times.
    pub p99_seconds: f64,
}

/// A query that took at least `slow_query_threshold`, as the slow-query log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowQuery {
    /// Its shape's [`fingerprint`](super::Shape::fingerprint); a decimal string in JSON.
    #[serde(serialize_with = "fingerprint_string")]
    pub fingerprint: u64,
    /// Its shape's normalized SQL (literals as `?`, so no parameter values are kept).
    pub normalized: Arc<str>,
    /// The `query_type` label it was timed under.
    pub query_type: String,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// When it was recorded (at its end). Seconds since the Unix epoch, when serialized.
    #[serde(serialize_with = "super::serialize_system_time")]
    pub at: SystemTime,
}

/// Accumulated calls of one shape (Welford's running mean and squared deviations).
struct Entry {
    shape: Shape,
    query_type: String,
    calls: u64,
    errors: u64,
    rows: u64,
    total: f64,
    min: f64,
    max: f64,
    mean: f64,
    squared_deviations: f64,
    buckets: Box<[u64; BUCKETS]>,
}

impl Entry {
    fn new(shape: Shape, query_type: &str) -> Self {
        Self {
            shape,
            query_type: query_type.to_owned(),
            calls: 0,
            errors: 0,
            rows: 0,
            total: 0.0,
            min: f64::INFINITY,
            max: 0.0,
            mean: 0.0,
            squared_deviations: 0.0,
            buckets: Box::new([0; BUCKETS]),
        }
    }

    fn record(&mut self, elapsed: Duration, failed: bool, rows: Option<u64>) {
        let seconds = elapsed.as_secs_f64();
        self.calls += 1;
        self.errors += u64::from(failed);
        self.rows += rows.unwrap_or(0);
        self.total += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
        let delta = seconds - self.mean;
        self.mean += delta / self.calls as f64;
        self.squared_deviations += delta * (seconds - self.mean);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)] += 1;
    }

    fn snapshot(&self) -> QueryStats {
        QueryStats {
            fingerprint: self.shape.fingerprint,
            normalized: Arc::clone(&self.shape.normalized),
            query_type: self.query_type.clone(),
            calls: self.calls,
            errors: self.errors,
            rows: self.rows,
            total_seconds: self.total,
            min_seconds: if self.calls == 0 { 0.0 } else { self.min },
            max_seconds: self.max,
            mean_seconds: self.mean,
            // Population deviation, as pg_stat_statements reports it.
            stddev_seconds: if self.calls == 0 {
                0.0
            } else {
                (self.squared_deviations / self.calls as f64).sqrt()
            },
            // A bucket's upper bound can pass the largest value seen in it.
            p50_seconds: quantile_seconds(&self.buckets[..], 0.50).min(self.max),
            p95_seconds: quantile_seconds(&self.buckets[..], 0.95).min(self.max),
            p99_seconds: quantile_seconds(&self.buckets[..], 0.99).min(self.max),
        }
    }
}

/// Statistics for at most `capacity` shapes: when a new shape finds it full, the least-called
/// twentieth are evicted at once (as pg_stat_statements does), and counted.
pub(crate) struct ShapeStats {
    capacity: usize,
    entries: HashMap<u64, Entry>,
    pub(crate) evictions: u64,
}

impl ShapeStats {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            evictions: 0,
        }
    }

    pub(crate) fn record(
        &mut self,
        shape: &Shape,
        query_type: &str,
        elapsed: Duration,
        failed: bool,
        rows: Option<u64>,
    ) {
        if !self.entries.contains_key(&shape.fingerprint) && self.entries.len() >= self.capacity {
            self.evict_least_called();
        }
        self.entries
            .entry(shape.fingerprint)
            .or_insert_with(|| Entry::new(shape.clone(), query_type))
            .record(elapsed, failed, rows);
    }

    fn evict_least_called(&mut self) {
        let mut by_calls: Vec<(u64, u64)> = self
            .entries
            .iter()
            .map(|(&fingerprint, entry)| (entry.calls, fingerprint))
            .collect();
        let evict = (self.capacity / 20).max(1).min(by_calls.len());
        by_calls.select_nth_unstable(evict - 1);
        for (_, fingerprint) in &by_calls[..evict] {
            self.entries.remove(fingerprint);
        }
        self.evictions += evict as u64;
    }

    pub(crate) fn all(&self) -> Vec<QueryStats> {
        self.entries.values().map(Entry::snapshot).collect()
    }

    pub(crate) fn get(&self, fingerprint: u64) -> Option<QueryStats> {
        self.entries.get(&fingerprint).map(Entry::snapshot)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.evictions = 0;
    }
}

/// The most recent slow queries.
pub(crate) struct SlowLog {
    capacity: usize,
    queries: VecDeque<SlowQuery>,
}

impl SlowLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            queries: VecDeque::with_capacity(capacity),
        }
    }

    pub(crate) fn push(&mut self, query: SlowQuery) {
        if self.queries.len() == self.capacity {
            self.queries.pop_front();
        }
        self.queries.push_back(query);
    }

    pub(crate) fn recent(&self) -> Vec<SlowQuery> {
        self.queries.iter().rev().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.queries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::shape::shape_of;

    #[test]
    fn statistics_follow_pg_stat_statements() {
        let mut stats = ShapeStats::new(10);
        let shape = shape_of("SELECT * FROM ads WHERE id = 1");
        for (ms, failed) in [(10, false), (20, false), (30, true)] {
            stats.record(&shape, "select", Duration::from_millis(ms), failed, Some(2));
        }
        let s = stats.get(shape.fingerprint).expect("recorded");
        assert_eq!((s.calls, s.errors, s.rows), (3, 1, 6));
        assert!((s.total_seconds - 0.06).abs() < 1e-9);
        assert!((s.mean_seconds - 0.02).abs() < 1e-9);
        assert!((s.min_seconds - 0.01).abs() < 1e-9 && (s.max_seconds - 0.03).abs() < 1e-9);
        let stddev = (((0.01f64 - 0.02).powi(2) + 0.0 + (0.03f64 - 0.02).powi(2)) / 3.0).sqrt();
        assert!(
            (s.stddev_seconds - stddev).abs() < 1e-9,
            "{}",
            s.stddev_seconds
        );
        assert!(
            s.p50_seconds >= 0.02 && s.p50_seconds <= 0.025,
            "{}",
            s.p50_seconds
        );
        assert!(s.p99_seconds >= 0.03 && s.p99_seconds <= 0.0375);
    }

    #[test]
    fn the_least_called_shapes_are_evicted_and_counted() {
        let mut stats = ShapeStats::new(20);
        let shapes: Vec<Shape> = (0..21)
            .map(|i| shape_of(&format!("SELECT c{i} FROM t")))
            .collect();
        for (i, shape) in shapes.iter().take(20).enumerate() {
            // Shape 7 is called least.
            for _ in 0..if i == 7 { 1 } else { 5 } {
                stats.record(shape, "select", Duration::from_millis(1), false, None);
            }
        }
        stats.record(&shapes[20], "select", Duration::from_millis(1), false, None);
        assert_eq!(stats.evictions, 1);
        assert!(
            stats.get(shapes[7].fingerprint).is_none(),
            "the least called went"
        );
        assert!(stats.get(shapes[20].fingerprint).is_some());
        assert_eq!(stats.all().len(), 20);
    }

    #[test]
    fn the_slow_log_keeps_the_most_recent() {
        let mut log = SlowLog::new(2);
        for i in 0..3u64 {
            log.push(SlowQuery {
                fingerprint: i,
                normalized: "q".into(),
                query_type: "select".into(),
                seconds: 1.0,
                at: SystemTime::now(),
            });
        }
        let recent: Vec<u64> = log.recent().iter().map(|q| q.fingerprint).collect();
        assert_eq!(recent, [2, 1]);
    }
}
