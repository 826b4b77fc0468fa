//! A tokenize service built on perf: tiktoken encoders loaded once through a model cache and
//! dropped under memory pressure, each text's tokens cached by content hash with
//! `#[cache_result]` (L1 and compressed L2), batches on the task manager, the admin API and
//! `/metrics`.
//!
//! `cargo run --release --example tokenize_service`, then
//! `curl -d '{"text": "hello world"}' -H 'Content-Type: application/json' 127.0.0.1:8100/tokenize`
//! and `curl 127.0.0.1:8100/tokenize/stats`. `TOKENIZE_ADDR` changes the address,
//! `TOKENIZE_CACHE_ENABLED=false` makes the token cache call straight through (the encoders
//! stay cached), `PERF_CONFIG` (or `PERF_*` variables) sets perf's settings. Logs go to
//! stderr, filtered by `RUST_LOG` (default `info`). Ctrl-C or SIGTERM stops it: requests in
//! flight finish, tasks drain.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

mod app;
// The ads back end's graceful stop, as it is.
#[path = "../ads_backend/serve.rs"]
mod serve;
mod tokens;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let options = app::Options::from_env()?;
    let (router, optimizer) = app::build(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let addr = listener.local_addr()?;
    // Scripts read the address from this line.
    println!("tokenize service on http://{addr}");
    tracing::info!(%addr, cache_enabled = options.cache_enabled, "serving");
    serve::serve(listener, router, optimizer).await?;
    Ok(())
}
