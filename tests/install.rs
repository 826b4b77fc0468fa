//! Installing the process-wide optimizer. One test: the global instance is process state.

use std::time::Duration;

use perf::{Error, InstallError, PerformanceConfig, PerformanceOptimizer, StartError};

fn optimizer(max_workers: u64) -> PerformanceOptimizer {
    let mut config = PerformanceConfig::default();
    config.tasks.max_workers = max_workers;
    PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid config")
}

#[test]
fn install_once_inside_a_runtime() {
    // Outside a runtime: refused, and nothing is installed.
    let err = optimizer(3).install().expect_err("no runtime");
    assert!(
        matches!(err, Error::Install(InstallError::NoRuntime)),
        "{err}"
    );

    // On a runtime without timers, which the background loops need: refused likewise.
    let no_timers = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let err = no_timers
        .block_on(async { optimizer(3).install() })
        .expect_err("no timers");
    assert!(
        matches!(err, Error::Start(StartError::TimersDisabled)),
        "{err}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let installed = optimizer(3).install().expect("first install");
        assert_eq!(
            installed.start().err(),
            Some(StartError::AlreadyRunning),
            "install() started the loops"
        );
        assert_eq!(installed.config().tasks.max_workers, 3);
        assert!(
            std::ptr::eq(installed, perf::global()),
            "global() is the installed instance"
        );

        let err = optimizer(4).install().expect_err("second install");
        assert!(
            matches!(err, Error::Install(InstallError::AlreadyInstalled)),
            "{err}"
        );
        assert_eq!(
            perf::global().config().tasks.max_workers,
            3,
            "the first install stands"
        );
    });
    drop(runtime);

    // The loops ended with the runtime install() ran on; they start again on the next.
    let next = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    next.block_on(async {
        let background = perf::global().start().expect("started again");
        assert!(background.is_running());
    });
}

#[test]
fn bad_configuration_is_refused_at_build() {
    let mut config = PerformanceConfig::default();
    config.cache.ttl = Duration::ZERO;
    let err = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect_err("invalid");
    assert!(
        err.to_string()
            .contains("cache_ttl: must be greater than zero"),
        "{err}"
    );
}
