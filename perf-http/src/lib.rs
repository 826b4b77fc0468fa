//! The admin HTTP API of perf: an axum [`Router`] to nest under `/performance`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let optimizer = perf_core::PerformanceOptimizer::builder().build()?.install()?;
//! let app = axum::Router::new().nest("/performance", perf_http::router(optimizer));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Every answer is JSON. Each client (by address, when served with
//! `into_make_service_with_connect_info::<SocketAddr>()`) may make
//! `admin_rate_limit_per_minute` requests a minute, then gets 429 with `Retry-After`.
//! Mutating routes (POST, PUT) need `Authorization: Bearer <token>`
//! with one of `admin_tokens`; read routes too when `admin_require_token_for_reads`. No token
//! is 401, a wrong one 403 (compared in constant time). A body over `admin_body_limit_bytes`
//! is 413; a body that does not parse is 400 and a field out of range 422, each naming the
//! field, and nothing changes. Every mutation is logged with its route, outcome, and the
//! token's configured name (never the token).

mod auth;
mod error;
mod limit;
mod metrics;
mod routes;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use perf_core::PerformanceOptimizer;
pub use perf_core::metrics::CATALOGUE;

pub use self::{
    error::ApiError,
    metrics::{install_prometheus, metrics_router},
};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) optimizer: Arc<OptimizerRef>,
}

/// The optimizer the API serves: the installed one, or one the caller keeps alive.
pub(crate) enum OptimizerRef {
    Static(&'static PerformanceOptimizer),
    Shared(Arc<PerformanceOptimizer>),
}

impl std::ops::Deref for OptimizerRef {
    type Target = PerformanceOptimizer;

    fn deref(&self) -> &PerformanceOptimizer {
        match self {
            OptimizerRef::Static(optimizer) => optimizer,
            OptimizerRef::Shared(optimizer) => optimizer,
        }
    }
}

/// The admin API over the installed optimizer (`install()`'s return value).
pub fn router(optimizer: &'static PerformanceOptimizer) -> Router {
    build(OptimizerRef::Static(optimizer))
}

/// The admin API over an optimizer that is not installed (tests, several instances).
pub fn router_for(optimizer: Arc<PerformanceOptimizer>) -> Router {
    build(OptimizerRef::Shared(optimizer))
}

fn build(optimizer: OptimizerRef) -> Router {
    let config = optimizer.config();
    let body_limit = usize::try_from(config.admin_body_limit_bytes).unwrap_or(usize::MAX);
    let limiter = limit::Limiter::per_minute(config.admin_rate_limit_per_minute);
    let state = AppState {
        optimizer: Arc::new(optimizer),
    };
    Router::new()
        .route("/health", get(routes::health))
        .route("/stats", get(routes::stats))
        .route("/memory/usage", get(routes::memory_usage))
        .route("/memory/cleanup", post(routes::memory_cleanup))
        .route("/cache/stats", get(routes::cache_stats))
        .route("/cache/manage", post(routes::cache_manage))
        .route("/tasks/stats", get(routes::task_stats))
        .route("/tasks/manage", post(routes::task_manage))
        .route("/database/stats", get(routes::database_stats))
        .route("/database/optimize", post(routes::database_optimize))
        .route("/system/resources", get(routes::system_resources))
        .route("/config", get(routes::get_config).put(routes::put_config))
        .route("/alerts", get(routes::alerts))
        .route("/recommendations", get(routes::recommendations))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Outermost: a client over its rate is refused before anything else is done.
        .route_layer(middleware::from_fn_with_state(limiter, limit::limit))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
