//! `/metrics` after some activity: the catalogue's names, histograms as `_bucket` series.
//! Its own test binary: it installs the process's metrics recorder.

use std::time::Duration;

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use perf_core::{PerformanceOptimizer, Tier};
use tower::ServiceExt;

#[tokio::test]
async fn the_catalogue_is_exported_with_histogram_buckets() {
    let handle = perf_http::install_prometheus().expect("recorder installed");
    let optimizer = PerformanceOptimizer::builder()
        .build()
        .expect("valid")
        .install()
        .expect("installed");

    let cache = optimizer.cache();
    for _ in 0..2 {
        cache
            .get_or_load("ad:1", Tier::L2, None, || async {
                Ok::<_, perf_core::Error>(1u8)
            })
            .await
            .expect("loaded");
    }
    drop(perf_core::performance_context("export.check"));
    let tasks = optimizer.tasks();
    let handle_task = tasks
        .submit(async { Ok::<_, ()>(()) })
        .await
        .expect("accepted");
    assert!(handle_task.await.is_completed());
    optimizer.query().record(
        "select",
        Some("SELECT 1"),
        Duration::from_millis(2),
        false,
        None,
    );
    // Now rather than at the background loops' next ticks.
    optimizer.publish_metrics();

    let app = perf_http::metrics_router(handle);
    let response = app
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert!(response.status().is_success());
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    for series in [
        "cache_hits_total{",
        "cache_misses_total{",
        "processing_time_seconds_bucket{",
        "async_operations_total{",
        "database_query_time_seconds_bucket{",
        "memory_usage_bytes{",
        "cache_size_bytes{",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(text.contains(r#"operation="task""#));
    assert!(
        text.contains(r#"le="0.0025""#),
        "the catalogue's buckets, not summaries"
    );
}

/// A service that builds its own recorder gets perf's buckets on it, and keeps its own.
#[test]
fn a_users_own_recorder_gets_perfs_buckets() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("app_latency_seconds".into()), &[0.5, 1.0])
        .expect("buckets");
    let recorder = perf_http::with_perf_buckets(builder)
        .expect("perf's buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let monitor = PerformanceOptimizer::builder().build().expect("valid");
        drop(monitor.monitor().start("own.recorder"));
        metrics::histogram!("app_latency_seconds").record(0.7);
    });
    let text = handle.render();
    assert!(
        text.contains("processing_time_seconds_bucket{operation=\"own.recorder\""),
        "{text}"
    );
    assert!(
        text.contains("app_latency_seconds_bucket{le=\"1\"}"),
        "{text}"
    );
}
