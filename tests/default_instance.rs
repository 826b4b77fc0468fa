//! Before any install, a default instance serves; installing after it was used is an error.

use perf::{Error, InstallError, PerformanceOptimizer, Tier};

#[tokio::test]
async fn the_default_instance_serves_until_install_is_refused() {
    let cache = perf::global().cache();
    cache.set("k", 1u32, Tier::L2, None).await.expect("stored");
    assert_eq!(
        cache
            .get::<u32>("k", Tier::L2)
            .await
            .expect("ok")
            .as_deref(),
        Some(&1)
    );
    assert_eq!(*perf::global().config(), perf::PerformanceConfig::default());

    let late = PerformanceOptimizer::builder().build().expect("valid");
    let err = late.install().expect_err("default already in use");
    assert!(
        matches!(err, Error::Install(InstallError::DefaultInUse)),
        "{err}"
    );
    assert!(err.to_string().contains("first thing in main"), "{err}");
    assert_eq!(
        perf::global()
            .cache()
            .get::<u32>("k", Tier::L2)
            .await
            .expect("ok")
            .as_deref(),
        Some(&1)
    );
}
