//! A prefix set after perf emitted a metric would split its series: refused, by `set_prefix`
//! and by `install()`. A process of its own, as the prefix is process-wide.

use perf_core::{
    Error, InstallError, PerformanceConfig, PerformanceOptimizer,
    metrics::{self as catalogue, PrefixError},
};

#[tokio::test]
async fn a_prefix_after_the_first_metric_is_refused() {
    assert_eq!(
        catalogue::name(catalogue::CACHE_HITS_TOTAL),
        "cache_hits_total"
    );
    assert_eq!(
        catalogue::set_prefix("late_"),
        Err(PrefixError::AlreadyEmitted)
    );

    let mut config = PerformanceConfig::default();
    config.monitor.metrics_prefix = "late_".into();
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("a valid configuration");
    match optimizer.install() {
        Err(Error::Install(InstallError::MetricsPrefix(PrefixError::AlreadyEmitted))) => {}
        other => panic!("expected the prefix refused, got {:?}", other.map(|_| ())),
    }
    assert_eq!(catalogue::prefix(), "");
}
