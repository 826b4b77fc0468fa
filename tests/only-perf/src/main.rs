//! A service whose `Cargo.toml` holds perf and tokio only, using perf as the README shows:
//! the optimizer, a cached function in L2 (serde through `perf::serde`), a monitored one, and
//! the memoized call's generated invalidation.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use perf::{
    PerformanceConfig, PerformanceOptimizer, Tier, cache_result, performance_monitor,
    serde::{Deserialize, Serialize},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "perf::serde")]
struct Ad {
    id: u64,
    title: String,
}

static DATABASE_READS: AtomicUsize = AtomicUsize::new(0);

#[performance_monitor("ads.fetch")]
#[cache_result(ttl = "10m", cache_type = "l2")]
async fn fetch_ad(id: u64) -> Result<Ad, std::io::Error> {
    DATABASE_READS.fetch_add(1, Ordering::Relaxed);
    Ok(Ad {
        id,
        title: format!("ad {id}"),
    })
}

/// What `main` and the test both run: every call the README shows, checked.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let optimizer = PerformanceOptimizer::builder()
        .config(PerformanceConfig::from_env()?)
        .build()?
        .install()?;

    let ad = optimizer
        .cache()
        .get_or_load("ad:42", Tier::L2, None, || async {
            Ok::<_, std::io::Error>(Ad {
                id: 42,
                title: "ad 42".into(),
            })
        })
        .await?;
    assert_eq!(ad.id, 42);

    assert_eq!(fetch_ad(7).await?.title, "ad 7");
    assert_eq!(fetch_ad(7).await?.title, "ad 7");
    assert_eq!(
        DATABASE_READS.load(Ordering::Relaxed),
        1,
        "the second call is a hit"
    );
    assert!(
        fetch_ad::invalidate(7).await?,
        "the call's result was in a local tier"
    );
    fetch_ad(7).await?;
    assert_eq!(
        DATABASE_READS.load(Ordering::Relaxed),
        2,
        "invalidated: loaded again"
    );

    let monitored = optimizer.monitor().snapshot();
    let fetches = monitored
        .iter()
        .find(|operation| operation.operation == "ads.fetch")
        .ok_or("ads.fetch was not monitored")?;
    assert_eq!(fetches.count, 3, "every call is timed, hits included");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_readme_setup_works_with_perf_and_tokio_only() {
        if let Err(error) = super::serve().await {
            panic!("{error}");
        }
    }

    /// The point of this crate: nothing but perf and tokio in `[dependencies]`.
    #[test]
    fn depends_on_perf_and_tokio_only() {
        let manifest = include_str!("../Cargo.toml");
        let dependencies = manifest
            .split("[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        let mut names: Vec<&str> = dependencies
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["perf", "tokio"]);
    }
}
