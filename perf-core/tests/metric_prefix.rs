//! The metric name prefix is process-wide, so its checks share one process of their own.

use metrics_util::debugging::DebuggingRecorder;
use perf_core::{
    PerformanceConfig, PerformanceOptimizer, Tier,
    metrics::{self as catalogue, PrefixError},
};

#[tokio::test]
async fn the_prefix_is_checked_set_once_and_put_before_every_name() {
    assert!(matches!(
        catalogue::set_prefix("ads-"),
        Err(PrefixError::Invalid(_))
    ));
    assert!(matches!(
        catalogue::set_prefix("9ads_"),
        Err(PrefixError::Invalid(_))
    ));
    let mut config = PerformanceConfig::default();
    config.monitor.metrics_prefix = "ads service".into();
    let error = config.validate().expect_err("a space is refused");
    assert!(error.to_string().contains("metrics_prefix"), "{error}");

    assert_eq!(catalogue::set_prefix(""), Ok(()), "empty means none");
    assert_eq!(catalogue::prefix(), "");
    assert_eq!(catalogue::set_prefix("ads_"), Ok(()));
    assert_eq!(
        catalogue::set_prefix("ads_"),
        Ok(()),
        "the same prefix again"
    );
    assert_eq!(
        catalogue::set_prefix("other_"),
        Err(PrefixError::AlreadySet {
            current: "ads_".into()
        })
    );
    assert_eq!(
        catalogue::name(catalogue::CACHE_HITS_TOTAL),
        "ads_cache_hits_total"
    );

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let optimizer = PerformanceOptimizer::builder().build().expect("defaults");
    optimizer
        .cache()
        .set("k", 1_u64, Tier::L1, None)
        .await
        .expect("set");
    optimizer
        .cache()
        .get::<u64>("k", Tier::L1)
        .await
        .expect("get");
    optimizer
        .cache()
        .get::<u64>("absent", Tier::L1)
        .await
        .expect("get");
    ::metrics::with_local_recorder(&recorder, || {
        catalogue::describe_all();
        optimizer.publish_metrics();
        let timing = optimizer.monitor().start("op");
        drop(timing);
    });
    let names: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_owned())
        .collect();
    for expected in [
        "ads_cache_hits_total",
        "ads_cache_misses_total",
        "ads_memory_usage_bytes",
        "ads_processing_time_seconds",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names.iter().all(|name| name.starts_with("ads_")),
        "every name prefixed: {names:?}"
    );
}
