//! The ceiling the ads back end's cached `GET /ads/{id}` is measured against: a bare axum
//! handler answering the same JSON from a `Vec` built at start, with no cache, no database,
//! no monitoring and no admin API. `scripts/loadtest.sh` runs it beside the example.
//!
//! `cargo run --release --example bare_ads` (`ADS_ADDR` changes the address, default
//! 127.0.0.1:8001).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
// The seed's formula, so that the JSON is the example's for every id.
#[path = "ads_backend/seeded.rs"]
mod seeded;

use seeded::SeededAd;

/// The example's seed: ids 1 to 5,000.
const ADS: i64 = 5_000;

async fn get_ad(
    State(ads): State<Arc<Vec<SeededAd>>>,
    Path(id): Path<i64>,
) -> Result<Json<SeededAd>, StatusCode> {
    id.checked_sub(1)
        .and_then(|index| usize::try_from(index).ok())
        .and_then(|index| ads.get(index))
        .cloned()
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let ads: Arc<Vec<SeededAd>> = Arc::new((1..=ADS).map(SeededAd::new).collect());
    let router = Router::new()
        .route("/ads/{id}", get(get_ad))
        .with_state(ads);
    let addr = std::env::var("ADS_ADDR").unwrap_or_else(|_| "127.0.0.1:8001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare ads handler on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await
}
