//! A small ads back end built on perf: cached reads at every tier, query statistics and a
//! cached analytics query, batches on the task manager, the admin API and `/metrics`.
//!
//! `cargo run --release --example ads_backend`, then
//! `curl 127.0.0.1:8000/ads/42` and `curl 127.0.0.1:8000/performance/stats`.
//! `ADS_ADDR` changes the address, `REDIS_URL` turns the Redis tier on,
//! `ADS_CACHE_ENABLED=false` makes every cached function call straight through, and
//! `ADS_DB_FAULT=fail|slow` (or `POST /admin/db-fault` with the bearer token `ADS_ADMIN_TOKEN`)
//! makes the database fail or stall, to watch fail-safe and the timeouts at work.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

mod app;

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let options = app::Options::from_env()?;
    let (router, optimizer) = app::build(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    println!("ads back end on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Ctrl-C: the server has stopped taking requests; let running tasks finish.
    let report = optimizer.tasks().shutdown(Duration::from_secs(10)).await;
    println!("stopped (tasks drained: {})", report.drained);
    Ok(())
}
