//! The Grafana dashboard charts only metrics the project exports, and every area.

use std::collections::BTreeSet;

#[test]
fn every_metric_in_the_dashboard_is_in_the_catalogue() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/grafana.json"
    ))
    .expect("dashboards/grafana.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut charted = BTreeSet::new();
    let mut rows = BTreeSet::new();
    for panel in panels {
        if panel["type"] == "row" {
            rows.insert(panel["title"].as_str().unwrap_or_default().to_owned());
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} queries nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names = selectors(expr);
            assert!(!names.is_empty(), "no metric in {expr}");
            for name in names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name)
                    .to_owned();
                assert!(
                    perf::metrics::find(&base).is_some(),
                    "{name} in {expr} is not in the catalogue"
                );
                charted.insert(base);
            }
        }
    }
    for area in ["Memory", "Cache", "Tasks", "Database", "System"] {
        assert!(rows.contains(area), "no {area} row");
    }
    for metric in [
        "memory_usage_bytes",
        "memory_cleanups_total",
        "cache_hits_total",
        "cache_size_bytes",
        "cache_operations_total",
        "cache_load_events_total",
        "tasks_running",
        "tasks_queued",
        "async_operations_total",
        "processing_time_seconds",
        "database_query_time_seconds",
        "database_slow_queries_total",
        "database_pool_connections",
        "database_pool_max_connections",
        "database_pool_waits_total",
        "query_cache_hits_total",
        "query_cache_misses_total",
        "resource_usage_percent",
        "network_io_bytes_total",
    ] {
        assert!(charted.contains(metric), "{metric} is not charted");
    }
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for seed_panel in SEED_PANELS {
        assert!(titles.contains(seed_panel), "no {seed_panel:?} panel");
    }
}

/// The seed's recommended panels, under the dashboard's titles.
const SEED_PANELS: &[&str] = &[
    "RSS memory",
    "Virtual memory",
    "Memory cleanups",
    "Cache hit rate by tier",
    "Cache size",
    "Cache operations",
    "Running tasks",
    "Task completion rate",
    "Task execution time",
    "Query response time",
    "Slow queries",
    "Query cache hit rate",
    "CPU usage",
    "Memory usage",
    "Disk usage",
    "Network I/O",
];

/// Metric names in a PromQL expression: the dashboard writes every selector as `name{...}`.
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let start = bytes[..i]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(0, |p| p + 1);
        let name = &expr[start..i];
        if !name.is_empty() && !name.starts_with("__") {
            names.push(name.to_owned());
        }
    }
    names
}

/// `dashboards/alerts.yml` queries only catalogue metrics, and holds perf's own rules: the
/// same names, each at both severities, with the default thresholds.
#[test]
fn the_alerting_rules_match_perfs_own() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/alerts.yml"
    ))
    .expect("dashboards/alerts.yml");
    for name in selectors(&text) {
        assert!(
            perf::metrics::find(&name).is_some(),
            "{name} is not in the catalogue"
        );
    }
    let rules = alerting_rules(&text);
    let defaults = perf::PerformanceConfig::default().alerts;
    let resource = defaults.resource_usage * 100.0;
    let expected = [
        (
            "memory_usage",
            "warning",
            format!(">= {} < 0.9", defaults.memory_usage),
        ),
        ("memory_usage", "critical", ">= 0.9".into()),
        (
            "cache_hit_rate",
            "warning",
            format!("< {} >= 0.35", defaults.cache_hit_rate),
        ),
        ("cache_hit_rate", "critical", "< 0.35".into()),
        (
            "task_failure_rate",
            "warning",
            format!(">= {} < 0.55", defaults.task_failure_rate),
        ),
        ("task_failure_rate", "critical", ">= 0.55".into()),
        (
            "slow_queries",
            "warning",
            format!(
                "> {} <= {}",
                defaults.slow_queries,
                defaults.slow_queries * 2
            ),
        ),
        (
            "slow_queries",
            "critical",
            format!("> {}", defaults.slow_queries * 2),
        ),
        ("cpu_exhaustion", "warning", format!(">= {resource} < 95")),
        ("cpu_exhaustion", "critical", ">= 95".into()),
        (
            "system_memory_exhaustion",
            "warning",
            format!(">= {resource} < 95"),
        ),
        ("system_memory_exhaustion", "critical", ">= 95".into()),
        ("disk_exhaustion", "warning", format!(">= {resource} < 95")),
        ("disk_exhaustion", "critical", ">= 95".into()),
    ];
    let found: Vec<_> = rules
        .iter()
        .map(|(a, s, _)| (a.as_str(), s.as_str()))
        .collect();
    let wanted: Vec<_> = expected.iter().map(|(a, s, _)| (*a, *s)).collect();
    assert_eq!(found, wanted);
    for ((alert, severity, expr), (_, _, threshold)) in rules.iter().zip(&expected) {
        assert!(
            expr.contains(threshold.as_str()),
            "{alert} {severity}: {expr}"
        );
    }
    assert!(
        text.contains(&format!("{} lookups", defaults.cache_min_lookups))
            && text.contains(&format!(">= {}", defaults.cache_min_lookups)),
        "the cache rules need alert_cache_min_lookups lookups"
    );
    for (alert, _, _) in &rules {
        assert!(
            perf::alerts::AlertKind::ALL
                .iter()
                .any(|kind| kind.as_str() == alert),
            "{alert} is not one of perf's alerts"
        );
    }
}

/// `(alert, severity, expr)` of each rule, in order; an `expr: >-` runs over the lines
/// indented under it.
fn alerting_rules(text: &str) -> Vec<(String, String, String)> {
    let mut rules: Vec<(String, String, String)> = Vec::new();
    let mut in_expr: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let content = line.trim();
        if let Some(expr_indent) = in_expr {
            if indent > expr_indent && !content.is_empty() {
                if let Some(rule) = rules.last_mut() {
                    rule.2.push(' ');
                    rule.2.push_str(content);
                }
                continue;
            }
            in_expr = None;
        }
        if let Some(alert) = content.strip_prefix("- alert:") {
            rules.push((alert.trim().to_owned(), String::new(), String::new()));
        } else if let Some(expr) = content.strip_prefix("expr:") {
            let expr = expr.trim();
            if expr.starts_with('>') || expr.starts_with('|') {
                in_expr = Some(indent);
            } else if let Some(rule) = rules.last_mut() {
                rule.2 = expr.to_owned();
            }
        } else if let Some(severity) = content.strip_prefix("severity:")
            && let Some(rule) = rules.last_mut()
        {
            rule.1 = severity.trim().to_owned();
        }
    }
    rules
}
