//! `/metrics` right after monitored calls, with no wait: every call is in it, from every
//! thread, although threads hand their calls to the recorder in batches. Its own test binary:
//! it installs the process's metrics recorder.

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use perf_core::{PerformanceOptimizer, monitor::Status};
use tower::ServiceExt;

async fn scrape(app: axum::Router) -> String {
    let response = app
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert!(response.status().is_success());
    let body = response.into_body().collect().await.expect("body");
    String::from_utf8(body.to_bytes().to_vec()).expect("utf-8")
}

/// The value of the series whose line starts with `series`.
fn value(text: &str, series: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(series))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn a_scrape_right_after_the_calls_counts_every_one() {
    let handle = perf_http::install_prometheus().expect("recorder installed");
    let optimizer = PerformanceOptimizer::builder().build().expect("valid");
    let monitor = optimizer.monitor();
    let calls = |n: u64| {
        for i in 0..n {
            let status = if i.is_multiple_of(5) {
                Status::Error
            } else {
                Status::Success
            };
            monitor.start("scrape.exact").finish(status);
        }
    };
    // Not multiples of the batch size: each thread has calls still queued.
    std::thread::scope(|s| {
        s.spawn(|| calls(1000));
        s.spawn(|| calls(333));
    });
    calls(7);

    let text = scrape(perf_http::metrics_router(handle.clone())).await;
    let series = |name: &str, labels: &str| value(&text, &format!("{name}{{{labels}}} "));
    assert_eq!(
        series(
            "async_operations_total",
            r#"operation="scrape.exact",status="success""#
        ),
        Some(800 + 266 + 5),
        "{text}"
    );
    assert_eq!(
        series(
            "async_operations_total",
            r#"operation="scrape.exact",status="error""#
        ),
        Some(200 + 67 + 2)
    );
    assert_eq!(
        series(
            "processing_time_seconds_count",
            r#"operation="scrape.exact""#
        ),
        Some(1340)
    );
}
