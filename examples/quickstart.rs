//! The smallest useful program: install the optimizer, cache through two tiers, print stats.
//!
//! Run with `cargo run --example quickstart`.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)] // printing is what this example is for

use std::time::Duration;

use perf::{PerformanceConfig, PerformanceOptimizer, Tier};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ad {
    id: u64,
    title: String,
    bid: f64,
}

/// Stands in for a database call.
async fn load_ad(id: u64) -> Result<Ad, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(Ad {
        id,
        title: format!("Ad number {id}"),
        bid: 0.5 + id as f64 / 100.0,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Defaults, overridden by PERF_* environment variables (PERF_CACHE_TTL=10m, ...).
    let config = PerformanceConfig::from_env()?;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()?
        .install()?;
    let cache = optimizer.cache();

    // Ten requests for each of five ads: the loader runs once per ad.
    for _round in 0..10 {
        for id in 1..=5 {
            let ad = cache
                .get_or_load(&format!("ad:{id}"), Tier::L2, None, || load_ad(id))
                .await?;
            debug_assert_eq!(ad.id, id);
        }
    }

    // Drop L1: the next reads are served from L2's compressed copies and promoted back.
    cache.clear(Tier::L1).await?;
    for id in 1..=5 {
        let ad = cache.get::<Ad>(&format!("ad:{id}"), Tier::L2).await?;
        println!("{:?}", ad.map(|ad| ad.title.clone()));
    }

    let stats = cache.stats();
    println!("{}", serde_json::to_string_pretty(&stats)?);
    println!("overall hit rate: {:.1}%", stats.hit_rate * 100.0);
    Ok(())
}
