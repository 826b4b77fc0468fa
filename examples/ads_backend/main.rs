//! A small ads back end built on perf: cached reads at every tier, query statistics and a
//! cached analytics query, batches on the task manager, the admin API and `/metrics`.
//!
//! `cargo run --release --example ads_backend`, then
//! `curl 127.0.0.1:8000/ads/42` and `curl 127.0.0.1:8000/performance/stats`.
//! `ADS_ADDR` changes the address, `REDIS_URL` turns the Redis tier on,
//! `ADS_CACHE_ENABLED=false` makes every cached function call straight through, and
//! `ADS_DB_FAULT=fail|slow` (or `POST /admin/db-fault` with the bearer token `ADS_ADMIN_TOKEN`)
//! makes the database fail or stall, to watch fail-safe and the timeouts at work.
//! `DATABASE_URL=postgres://...` puts it on PostgreSQL instead of the embedded SQLite.
//! `--config FILE` (or `PERF_CONFIG`) reads perf's settings from a TOML file, under `PERF_*`
//! variables. Logs go to stderr, filtered by `RUST_LOG` (default `info`), as JSON with
//! `ADS_LOG_FORMAT=json`. Ctrl-C or SIGTERM stops it: requests in flight finish, tasks drain.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

mod app;
mod db;
mod serve;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_logging();
    let options = app::Options::from_env_and_args(std::env::args().skip(1))?;
    let (router, optimizer) = app::build(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let addr = listener.local_addr()?;
    // Scripts read the address from this line.
    println!("ads back end on http://{addr}");
    tracing::info!(%addr, "serving");
    serve::serve(listener, router, optimizer).await?;
    Ok(())
}

/// Log lines on stderr: `RUST_LOG` filters (default `info`), `ADS_LOG_FORMAT=json` makes
/// them JSON, one object a line, for a log collector.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ADS_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}
