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
use serde::Serialize;

/// The example's `Ad`, with the values its seed writes for the same id.
#[derive(Debug, Clone, Serialize)]
struct Ad {
    id: i64,
    campaign: i64,
    category: String,
    title: String,
    bid: f64,
}

const CATEGORIES: [&str; 5] = ["sports", "travel", "tech", "food", "music"];
const ADS: i64 = 5_000;

fn seeded(id: i64) -> Ad {
    let category = CATEGORIES[(id % 5) as usize];
    Ad {
        id,
        campaign: id % 50,
        category: category.to_owned(),
        title: format!("Ad {id}: {category} deals"),
        bid: 0.5 + (id % 17) as f64 / 10.0,
    }
}

async fn get_ad(
    State(ads): State<Arc<Vec<Ad>>>,
    Path(id): Path<i64>,
) -> Result<Json<Ad>, StatusCode> {
    let index = usize::try_from(id - 1).map_err(|_| StatusCode::NOT_FOUND)?;
    ads.get(index)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let ads: Arc<Vec<Ad>> = Arc::new((1..=ADS).map(seeded).collect());
    let router = Router::new()
        .route("/ads/{id}", get(get_ad))
        .with_state(ads);
    let addr = std::env::var("ADS_ADDR").unwrap_or_else(|_| "127.0.0.1:8001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare ads handler on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await
}
