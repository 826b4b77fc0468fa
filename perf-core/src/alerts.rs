//! Alerts and recommendations, computed from a [`Snapshot`] of every component's statistics.
//!
//! An alert says what is wrong now, with the observed value and the threshold it crossed; it is
//! critical once the value is past the threshold by half the remaining way (memory at 90% with
//! an 80% threshold). A recommendation says what to change, with the figures behind it.
//!
//! # In the background
//!
//! The optimizer's background loops evaluate the rules every 15 s at most, with the cache
//! hit rate, the task failure rate and the slow queries counted over `alert_window` (from
//! counter deltas), memory and the machine as sampled then. Each alert's state is kept
//! ([`AlertState`]): a [`Transition`], firing or resolved, is logged through `tracing` (warn
//! and info, with the alert's name, severity, value and threshold), sets the gauge
//! `performance_alerts_active{alert, severity}` (1, then 0), and with `alert_webhook_url` set
//! (and the `webhook` feature) is POSTed as Alertmanager's v2 API takes alerts.
//! `dashboards/alerts.yml` holds the same rules for Prometheus.

mod state;
#[cfg(feature = "webhook")]
mod webhook;
mod window;

use serde::Serialize;

pub use self::state::{ActiveAlert, AlertState, AlertStatus, Transition, WebhookStats};
#[cfg(feature = "webhook")]
pub(crate) use self::webhook::{Outbox, Policy as WebhookPolicy};
pub(crate) use self::{
    state::{AlertBook, announce},
    window::Window,
};

use crate::{
    cache::CacheStats, config::PerformanceConfig, memory::MemoryUsage, system::SystemResources,
    tasks::TaskStats,
};

/// What the alerts and recommendations are computed from: every component's statistics at
/// one moment, as [`PerformanceOptimizer::snapshot`](crate::PerformanceOptimizer::snapshot)
/// takes them. To try thresholds, take one and change its fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The cache's counters since it was built.
    pub cache: CacheStats,
    /// The process's memory against its limit; `None` when it could not be sampled.
    pub memory: Option<MemoryUsage>,
    /// The task pool: what it ran since it was built, what runs and waits now, latencies.
    pub tasks: TaskStats,
    /// Slow queries logged within `alert_window`.
    pub recent_slow_queries: u64,
    /// The machine's CPU, memory and disks; `None` when not sampled, and always without the
    /// `system` feature (which leaves out the resource alerts).
    pub system: Option<SystemResources>,
}

/// How urgent an [`Alert`] is. Ordered: `Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// The threshold is reached.
    Warning,
    /// Well past the threshold: half the remaining way to 100% for a usage or failure rate,
    /// under half the threshold for the hit rate, over twice the limit for slow queries.
    Critical,
}

/// Which rule raised an [`Alert`]; each compares one figure with one `alert_*` threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// The process's memory against its limit (`alert_memory_usage`).
    MemoryUsage,
    /// The whole cache's hit rate under `alert_cache_hit_rate`, once L1 has seen
    /// `alert_cache_min_lookups` lookups.
    CacheHitRate,
    /// More than `alert_slow_queries` slow queries within `alert_window`.
    SlowQueries,
    /// The share of finished tasks that failed, panicked or timed out, against
    /// `alert_task_failure_rate`.
    TaskFailureRate,
    /// The machine's CPU use against `alert_resource_usage`.
    CpuExhaustion,
    /// The machine's memory use against `alert_resource_usage`.
    SystemMemoryExhaustion,
    /// The fullest disk's use against `alert_resource_usage`.
    DiskExhaustion,
}

impl Severity {
    /// Its name, as in JSON and the `severity` label: `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl AlertKind {
    /// Every rule, in the order they are evaluated.
    pub const ALL: [AlertKind; 7] = [
        AlertKind::MemoryUsage,
        AlertKind::CacheHitRate,
        AlertKind::SlowQueries,
        AlertKind::TaskFailureRate,
        AlertKind::CpuExhaustion,
        AlertKind::SystemMemoryExhaustion,
        AlertKind::DiskExhaustion,
    ];

    /// Its name, as in JSON, the `alert` label of `performance_alerts_active`, the webhook's
    /// `alertname` and `dashboards/alerts.yml`: `memory_usage`, `cache_hit_rate`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MemoryUsage => "memory_usage",
            AlertKind::CacheHitRate => "cache_hit_rate",
            AlertKind::SlowQueries => "slow_queries",
            AlertKind::TaskFailureRate => "task_failure_rate",
            AlertKind::CpuExhaustion => "cpu_exhaustion",
            AlertKind::SystemMemoryExhaustion => "system_memory_exhaustion",
            AlertKind::DiskExhaustion => "disk_exhaustion",
        }
    }
}

/// Something wrong now: the figure observed and the threshold it crossed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Alert {
    /// The rule that raised it.
    pub kind: AlertKind,
    /// Warning, or critical when well past the threshold.
    pub severity: Severity,
    /// For people: the figures in words, such as `memory at 95% of its cgroup limit (973 MiB
    /// of 1024 MiB)`.
    pub message: String,
    /// The figure, in the threshold's unit: a fraction (0 to 1) for usages and rates, a count
    /// for slow queries.
    pub observed: f64,
    /// The configured threshold it was compared with.
    pub threshold: f64,
}

/// A concrete change to make, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// A stable name: `raise_cache_max_size`, `raise_l2_max_bytes`, `raise_max_workers`,
    /// `review_task_timeout`, `review_slow_queries` or `reduce_memory`.
    pub kind: &'static str,
    /// For people: what to change and the figures behind it; for a setting, its value now and
    /// the one suggested.
    pub message: String,
    /// The figures that triggered it, by name.
    pub figures: Vec<(&'static str, f64)>,
}

/// Every alert the snapshot raises under `config`'s thresholds, most severe first.
///
/// The counters are taken as they are in the snapshot: since start in
/// [`PerformanceOptimizer::snapshot`](crate::PerformanceOptimizer::snapshot)'s, over
/// `alert_window` in the background evaluation's.
pub fn alerts(snapshot: &Snapshot, config: &PerformanceConfig) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = readings(snapshot, config)
        .into_iter()
        .filter_map(Reading::into_alert)
        .collect();
    alerts.sort_by_key(|alert| std::cmp::Reverse(alert.severity));
    alerts
}

/// One rule's figure against its threshold, raised or not: an alert that resolves is logged
/// with the figure that ended it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    pub(crate) kind: AlertKind,
    /// `None` while the figure is on the right side of its threshold.
    pub(crate) severity: Option<Severity>,
    pub(crate) message: String,
    pub(crate) observed: f64,
    pub(crate) threshold: f64,
}

impl Reading {
    fn into_alert(self) -> Option<Alert> {
        Some(Alert {
            kind: self.kind,
            severity: self.severity?,
            message: self.message,
            observed: self.observed,
            threshold: self.threshold,
        })
    }
}

/// Every rule that can judge the snapshot, in [`AlertKind`]'s order. A rule without its
/// figures (memory not sampled, too few lookups, no finished task) gives no reading.
pub(crate) fn readings(snapshot: &Snapshot, config: &PerformanceConfig) -> Vec<Reading> {
    let mut readings = Vec::new();
    let window = humantime::format_duration(config.alerts.window);
    if let Some(memory) = &snapshot.memory {
        readings.push(above(
            AlertKind::MemoryUsage,
            memory.usage_fraction,
            config.alerts.memory_usage,
            format!(
                "memory at {:.0}% of its {} limit ({} MiB of {} MiB)",
                memory.usage_fraction * 100.0,
                memory.limit_source,
                memory.rss_bytes >> 20,
                memory.limit_bytes >> 20
            ),
        ));
    }
    let cache = &snapshot.cache;
    let lookups = cache.l1.hits + cache.l1.misses;
    if lookups >= config.alerts.cache_min_lookups {
        let threshold = config.alerts.cache_hit_rate;
        readings.push(Reading {
            kind: AlertKind::CacheHitRate,
            severity: if cache.hit_rate >= threshold {
                None
            } else if cache.hit_rate < threshold / 2.0 {
                Some(Severity::Critical)
            } else {
                Some(Severity::Warning)
            },
            message: format!(
                "cache hit rate {:.0}% over {lookups} lookups, threshold {:.0}%",
                cache.hit_rate * 100.0,
                threshold * 100.0
            ),
            observed: cache.hit_rate,
            threshold,
        });
    }
    let slow = snapshot.recent_slow_queries as f64;
    let limit = config.alerts.slow_queries as f64;
    readings.push(Reading {
        kind: AlertKind::SlowQueries,
        severity: if slow <= limit {
            None
        } else if slow > limit * 2.0 {
            Some(Severity::Critical)
        } else {
            Some(Severity::Warning)
        },
        message: format!("{slow} slow queries in the last {window}"),
        observed: slow,
        threshold: limit,
    });
    let tasks = &snapshot.tasks;
    let finished = tasks.completed + tasks.failed + tasks.panicked + tasks.timed_out;
    if finished > 0 {
        readings.push(above(
            AlertKind::TaskFailureRate,
            tasks.failure_rate,
            config.alerts.task_failure_rate,
            format!(
                "{:.1}% of tasks failed, panicked or timed out ({} of {finished})",
                tasks.failure_rate * 100.0,
                tasks.failed + tasks.panicked + tasks.timed_out
            ),
        ));
    }
    if let Some(system) = &snapshot.system {
        let threshold = config.alerts.resource_usage;
        for (kind, percent, what) in [
            (AlertKind::CpuExhaustion, system.cpu_percent, "CPU"),
            (
                AlertKind::SystemMemoryExhaustion,
                system.memory_percent,
                "system memory",
            ),
            (AlertKind::DiskExhaustion, system.disk_percent, "disk"),
        ] {
            readings.push(above(
                kind,
                percent / 100.0,
                threshold,
                format!("{what} at {percent:.0}%"),
            ));
        }
    }
    readings
}

/// Raised when `observed` reaches `threshold`; critical past half the way beyond it.
fn above(kind: AlertKind, observed: f64, threshold: f64, message: String) -> Reading {
    let critical = threshold + (1.0 - threshold).max(0.0) / 2.0;
    let severity = if observed < threshold {
        None
    } else if observed >= critical {
        Some(Severity::Critical)
    } else {
        Some(Severity::Warning)
    };
    Reading {
        kind,
        severity,
        message,
        observed,
        threshold,
    }
}

/// Concrete changes the snapshot suggests, with their figures.
pub fn recommendations(snapshot: &Snapshot, config: &PerformanceConfig) -> Vec<Recommendation> {
    let mut found = Vec::new();
    let l1 = &snapshot.cache.l1;
    let lookups = l1.hits + l1.misses;
    // L1 throws away much of what it takes in, and misses: it is too small for the working set.
    if lookups >= config.alerts.cache_min_lookups
        && l1.inserts > 0
        && l1.evictions * 2 >= l1.inserts
        && l1.hit_rate < 0.5
    {
        let suggested = config.cache.max_size.saturating_mul(2);
        found.push(Recommendation {
            kind: "raise_cache_max_size",
            message: format!(
                "L1 evicted {} of {} entries stored and hit {:.0}% of lookups: raise \
                 cache_max_size from {} to {suggested}",
                l1.evictions,
                l1.inserts,
                l1.hit_rate * 100.0,
                config.cache.max_size
            ),
            figures: vec![
                ("l1_evictions", l1.evictions as f64),
                ("l1_inserts", l1.inserts as f64),
                ("l1_hit_rate", l1.hit_rate),
                ("cache_max_size", config.cache.max_size as f64),
            ],
        });
    }
    let l2 = &snapshot.cache.l2;
    if l2.refused > 0 {
        found.push(Recommendation {
            kind: "raise_l2_max_bytes",
            message: format!(
                "L2 refused {} values too large for one of its shards: raise l2_max_bytes \
                 (now {}) or lower max_value_bytes",
                l2.refused, config.cache.l2_max_bytes
            ),
            figures: vec![
                ("l2_refused", l2.refused as f64),
                ("l2_max_bytes", config.cache.l2_max_bytes as f64),
            ],
        });
    }
    let tasks = &snapshot.tasks;
    // Tasks wait longer for a worker than they run: more workers would shorten the queue.
    if tasks.queue_wait.p50 > tasks.run_time.p50 && tasks.run_time.p50 > 0.0 {
        let suggested = tasks.max_workers.saturating_mul(2);
        found.push(Recommendation {
            kind: "raise_max_workers",
            message: format!(
                "tasks wait {:.1} ms for a worker (median) and run {:.1} ms: raise max_workers \
                 from {} to {suggested}",
                tasks.queue_wait.p50 * 1e3,
                tasks.run_time.p50 * 1e3,
                tasks.max_workers
            ),
            figures: vec![
                ("queue_wait_p50_seconds", tasks.queue_wait.p50),
                ("run_time_p50_seconds", tasks.run_time.p50),
                ("max_workers", tasks.max_workers as f64),
            ],
        });
    }
    if tasks.timed_out > 0 && tasks.timed_out * 10 >= tasks.completed.max(1) {
        found.push(Recommendation {
            kind: "review_task_timeout",
            message: format!(
                "{} tasks timed out against {} completed: raise task_timeout (now {}) or \
                 make the slow tasks faster",
                tasks.timed_out,
                tasks.completed,
                humantime::format_duration(config.tasks.timeout)
            ),
            figures: vec![
                ("timed_out", tasks.timed_out as f64),
                ("completed", tasks.completed as f64),
            ],
        });
    }
    if snapshot.recent_slow_queries > 0 {
        found.push(Recommendation {
            kind: "review_slow_queries",
            message: format!(
                "{} queries over {} in the last {}: see /database/stats for their shapes, \
                 and index or cache them",
                snapshot.recent_slow_queries,
                humantime::format_duration(config.query.slow_threshold),
                humantime::format_duration(config.alerts.window)
            ),
            figures: vec![("recent_slow_queries", snapshot.recent_slow_queries as f64)],
        });
    }
    if let Some(memory) = &snapshot.memory
        && memory.usage_fraction >= config.memory.cleanup_threshold
    {
        found.push(Recommendation {
            kind: "reduce_memory",
            message: format!(
                "memory at {:.0}% of its limit, over the cleanup threshold of {:.0}%: lower \
                 cache_max_size or l2_max_bytes, or raise the limit",
                memory.usage_fraction * 100.0,
                config.memory.cleanup_threshold * 100.0
            ),
            figures: vec![
                ("usage_fraction", memory.usage_fraction),
                ("memory_cleanup_threshold", config.memory.cleanup_threshold),
            ],
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cache::TierStats, memory::LimitSource, tasks::LatencyStats};

    fn latency(p50: f64) -> LatencyStats {
        LatencyStats {
            mean: p50,
            p50,
            p95: p50,
            p99: p50,
            max: p50,
        }
    }

    /// Every figure well inside its threshold.
    pub(crate) fn calm() -> Snapshot {
        Snapshot {
            cache: CacheStats {
                l1: TierStats {
                    hits: 9000,
                    misses: 1000,
                    hit_rate: 0.9,
                    inserts: 1000,
                    ..TierStats::default()
                },
                hit_rate: 0.9,
                ..CacheStats::default()
            },
            memory: Some(MemoryUsage {
                rss_bytes: 300 << 20,
                virtual_bytes: 1 << 30,
                allocator: None,
                tracked: None,
                system_total_bytes: 4 << 30,
                system_available_bytes: 2 << 30,
                limit_bytes: 1 << 30,
                limit_source: LimitSource::Cgroup,
                usage_fraction: 0.3,
            }),
            tasks: TaskStats {
                submitted: 100,
                queued: 0,
                running: 0,
                running_blocking: 0,
                max_workers: 10,
                completed: 99,
                failed: 1,
                panicked: 0,
                timed_out: 0,
                cancelled: 0,
                failure_rate: 0.01,
                queue_wait: latency(0.001),
                run_time: latency(0.01),
            },
            recent_slow_queries: 0,
            system: Some(SystemResources {
                cpu_percent: 20.0,
                cpu_cores: 2,
                memory_total_bytes: 4 << 30,
                memory_available_bytes: 2 << 30,
                memory_percent: 50.0,
                disks: Vec::new(),
                disk_percent: 40.0,
                network_received_bytes: 0,
                network_transmitted_bytes: 0,
            }),
        }
    }

    #[test]
    fn a_calm_snapshot_raises_nothing() {
        let config = PerformanceConfig::default();
        assert_eq!(alerts(&calm(), &config), []);
        assert_eq!(recommendations(&calm(), &config), []);
    }

    #[test]
    fn each_threshold_raises_its_alert_with_the_figures() {
        let config = PerformanceConfig::default();
        let mut snapshot = calm();
        if let Some(memory) = &mut snapshot.memory {
            memory.usage_fraction = 0.95;
        }
        snapshot.cache.hit_rate = 0.5;
        snapshot.recent_slow_queries = config.alerts.slow_queries + 1;
        snapshot.tasks.failure_rate = 0.2;
        if let Some(system) = &mut snapshot.system {
            system.disk_percent = 91.0;
        }
        let raised = alerts(&snapshot, &config);
        let kinds: Vec<_> = raised.iter().map(|a| (a.kind, a.severity)).collect();
        assert_eq!(
            kinds,
            [
                (AlertKind::MemoryUsage, Severity::Critical),
                (AlertKind::CacheHitRate, Severity::Warning),
                (AlertKind::SlowQueries, Severity::Warning),
                (AlertKind::TaskFailureRate, Severity::Warning),
                (AlertKind::DiskExhaustion, Severity::Warning),
            ]
        );
        let memory = &raised[0];
        assert_eq!((memory.observed, memory.threshold), (0.95, 0.8));
        assert!(
            memory.message.contains("95%") && memory.message.contains("cgroup"),
            "{}",
            memory.message
        );
    }

    #[test]
    fn a_low_hit_rate_needs_enough_lookups() {
        let config = PerformanceConfig::default();
        let mut snapshot = calm();
        snapshot.cache.hit_rate = 0.1;
        snapshot.cache.l1.hits = 10;
        snapshot.cache.l1.misses = 90;
        assert!(
            alerts(&snapshot, &config).is_empty(),
            "100 lookups are too few to judge"
        );
    }

    #[test]
    fn recommendations_name_the_setting_and_the_figures() {
        let config = PerformanceConfig::default();
        let mut snapshot = calm();
        snapshot.cache.l1 = TierStats {
            hits: 2000,
            misses: 8000,
            hit_rate: 0.2,
            inserts: 8000,
            evictions: 7000,
            ..TierStats::default()
        };
        snapshot.tasks.queue_wait = latency(0.2);
        snapshot.tasks.run_time = latency(0.05);
        let found = recommendations(&snapshot, &config);
        let kinds: Vec<_> = found.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["raise_cache_max_size", "raise_max_workers"]);
        assert!(
            found[0].message.contains("from 10000 to 20000"),
            "{}",
            found[0].message
        );
        assert!(
            found[1].message.contains("from 10 to 20"),
            "{}",
            found[1].message
        );
        assert!(found[1].figures.contains(&("queue_wait_p50_seconds", 0.2)));
    }
}
