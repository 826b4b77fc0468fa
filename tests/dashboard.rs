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
        "cache_hits_total",
        "cache_load_events_total",
        "async_operations_total",
        "processing_time_seconds",
        "database_query_time_seconds",
        "resource_usage_percent",
    ] {
        assert!(charted.contains(metric), "{metric} is not charted");
    }
}

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
