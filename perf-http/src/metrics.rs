//! `/metrics`: Prometheus text through metrics-exporter-prometheus, with the catalogue's
//! explicit histogram buckets.

use std::time::Duration;

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use perf_core::metrics::{CATALOGUE, MetricKind};

/// How often the exporter's histograms are compacted.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// `builder` with perf's histogram buckets: each of the catalogue's histograms gets its own,
/// so that Prometheus receives `_bucket` series rather than summaries. For a service that
/// builds its own recorder; the buckets it set for other metrics stay. The buckets match the
/// names by their end, so that they apply whether `metrics_prefix` is set before or after.
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let builder = perf_http::with_perf_buckets(PrometheusBuilder::new())?
///     .add_global_label("service", "ads");
/// let recorder = builder.build_recorder(); // or .install_recorder()
/// # drop(recorder);
/// # Ok::<_, metrics_exporter_prometheus::BuildError>(())
/// ```
pub fn with_perf_buckets(mut builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    for metric in CATALOGUE {
        if let (MetricKind::Histogram, Some(buckets)) = (metric.kind, metric.buckets) {
            builder =
                builder.set_buckets_for_metric(Matcher::Suffix(metric.name.into()), buckets)?;
        }
    }
    Ok(builder)
}

/// Installs the Prometheus recorder as the `metrics` recorder, with every catalogue histogram
/// given its buckets (so that Prometheus receives `_bucket` series), and starts its upkeep on
/// the current tokio runtime. Call it first thing in `main`, before `install()`.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = with_perf_buckets(PrometheusBuilder::new())?.install_recorder()?;
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                ticker.tick().await;
                upkeep.run_upkeep();
            }
        });
    }
    Ok(handle)
}

/// `GET /metrics`: the Prometheus text of `handle`, for an app of any state type `S`. Every
/// monitored call that ended before the request is in it: the route hands the calls each
/// thread holds back to the recorder first ([`perf_core::metrics::flush`]).
pub fn metrics_router<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                perf_core::metrics::flush();
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}
