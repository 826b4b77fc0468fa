//! The admin HTTP API of perf: an axum [`Router`] to nest under `/performance`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // perf-core's settings and the admin API's, from one file and the PERF_* environment.
//! let (config, admin) = perf_http::load_config(Some("perf.toml".as_ref()))?;
//! let optimizer = perf_core::PerformanceOptimizer::builder().config(config).build()?.install()?;
//! let app = axum::Router::new().nest("/performance", perf_http::router(optimizer, admin)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Every answer is JSON. The [`AdminConfig`] sets access and limits. Each request goes
//! through these steps, in this order:
//!
//! 1. **Who is calling.** The connection's address, when served with
//!    `into_make_service_with_connect_info::<SocketAddr>()` (without it, all clients are one).
//!    When the connection comes from one of `admin_trusted_proxies` (addresses or networks
//!    such as `10.0.0.0/8`), the client is the right-most address of `X-Forwarded-For` that is
//!    not itself a trusted proxy; from any other peer, `X-Forwarded-For` is ignored.
//! 2. **Which token.** `Authorization: Bearer <token>`, the scheme in any case (RFC 9110),
//!    compared with each of `admin_tokens` as SHA-256 digests in constant time, so that the
//!    time taken tells neither a token's content nor its length.
//! 3. **The rate.** `admin_rate_limit_per_minute` requests a minute, the whole allowance
//!    usable in one burst, then 429 with `Retry-After`. A caller with a valid token spends
//!    the allowance of the token's name, wherever it calls from; anyone else (a wrong token
//!    included, so that guessing is limited) spends that of its address (IPv6 by /64), so
//!    that unauthenticated requests from an operator's address or proxy do not starve the
//!    operator.
//! 4. **The token the route needs.** Mutating routes (POST, PUT) need a valid token; read
//!    routes too when `admin_require_token_for_reads`. No token is 401 (with
//!    `WWW-Authenticate: Bearer`), a wrong one 403, on any route that takes a token.
//! 5. **The body.** Over `admin_body_limit_bytes` is 413; one that does not parse is 400 and a
//!    field out of range 422, each naming the field, and nothing changes.
//!
//! `GET /health` (liveness) skips steps 2 and 4: it never needs a token, even with
//! `admin_require_token_for_reads`, since a probe should not hold a secret. It is still
//! rate limited, per client, but in buckets apart from the other routes' and at
//! `admin_rate_limit_per_minute` or 600 a minute, whichever is more: a probe every second
//! from each of ten probers at one address never sees 429, and a flood of probes costs
//! no one else their allowance.
//!
//! Every refusal (401, 403, 413, 429) is logged through `tracing` at warn, with the client's
//! address, the method and path, the token's configured name when a valid one was given, and
//! never a token. Every mutation is logged too, with its route, outcome, client and token
//! name. Building the router with no token configured logs a warning: its mutation routes
//! are mounted but refuse every request, and `PUT /config` cannot add a token.
//!
//! `GET /openapi.json` is the OpenAPI 3.1 document of every route ([`openapi_json`]): its
//! parameters and bodies, each answer's schema, and every status it can answer with, errors
//! as `{"error": "...", "field": "..."}` ([`ApiError`]).
//!
//! `GET /profile/cpu?seconds=N&format=svg|pprof` samples the process's CPU for N seconds (1
//! to 60, default 10) and returns a flamegraph SVG or a pprof protobuf: it always needs a
//! token, answers 409 while `profiling_enabled` is off or another profile runs, and 501
//! without the `cpu-profile` feature (default on; Unix only).
//!
//! `PUT /config` changes, while the API serves, every setting that can change at run time:
//! perf-core's [`HOT_FIELDS`](perf_core::HOT_FIELDS) and every [`AdminConfig`] field (tokens,
//! rate, body limit), all or nothing. A field that cannot change, or a value of the wrong
//! type, is 422 naming the field. The document `GET /config` returns can be sent back as it
//! is: `***` (how secrets are shown) keeps a field's current value.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod body;
mod config;
mod error;
mod guard;
mod limit;
mod live;
mod metrics;
mod openapi;
mod profile;
mod proxy;
mod routes;
mod update;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{MethodRouter, get, post},
};
use perf_core::PerformanceOptimizer;
/// Returned by [`load_config`], [`router`] and [`router_for`].
pub use perf_core::{ConfigError, metrics::CATALOGUE};

pub use self::{
    config::{AdminConfig, Secret, load_config},
    error::ApiError,
    metrics::{install_prometheus, metrics_router, with_perf_buckets},
    proxy::{IpNet, IpNetError},
};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) optimizer: OptimizerRef,
    /// The admin settings in force, which `PUT /config` replaces.
    pub(crate) admin: Arc<live::LiveAdmin>,
}

/// The optimizer the API serves: the installed one, or one the caller keeps alive.
pub(crate) type OptimizerRef = perf_core::StaticOrShared<PerformanceOptimizer>;

/// The admin API over the installed optimizer (`install()`'s return value). Errs, naming
/// each bad field, if `admin` is not valid.
///
/// The router carries its own state, so it fits an app of any state type `S`: nest or merge
/// it into a `Router<AppState>` as it is.
pub fn router<S: Clone + Send + Sync + 'static>(
    optimizer: &'static PerformanceOptimizer,
    admin: AdminConfig,
) -> Result<Router<S>, ConfigError> {
    build(OptimizerRef::Static(optimizer), admin)
}

/// The OpenAPI 3 document of [`router`]'s routes, as JSON.
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(openapi::openapi())
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

/// The admin API over an optimizer that is not installed (tests, several instances). Errs,
/// naming each bad field, if `admin` is not valid.
pub fn router_for<S: Clone + Send + Sync + 'static>(
    optimizer: Arc<PerformanceOptimizer>,
    admin: AdminConfig,
) -> Result<Router<S>, ConfigError> {
    build(OptimizerRef::Shared(optimizer), admin)
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Liveness: open to all, in rate buckets of its own ([`guard::probe`]).
    Probe,
    /// Tokens, rate and body limits as configured ([`guard::admin`]).
    Admin,
}

/// Every route, by path. The OpenAPI document must describe each (a test checks).
fn routes() -> Vec<(&'static str, Access, MethodRouter<AppState>)> {
    use Access::{Admin, Probe};
    vec![
        ("/health", Probe, get(routes::health)),
        ("/stats", Admin, get(routes::stats)),
        ("/memory/usage", Admin, get(routes::memory_usage)),
        ("/memory/cleanup", Admin, post(routes::memory_cleanup)),
        ("/cache/stats", Admin, get(routes::cache_stats)),
        ("/cache/manage", Admin, post(routes::cache_manage)),
        ("/tasks/stats", Admin, get(routes::task_stats)),
        ("/tasks/manage", Admin, post(routes::task_manage)),
        ("/database/stats", Admin, get(routes::database_stats)),
        ("/database/optimize", Admin, post(routes::database_optimize)),
        ("/system/resources", Admin, get(routes::system_resources)),
        (
            "/config",
            Admin,
            get(routes::get_config).put(routes::put_config),
        ),
        ("/alerts", Admin, get(routes::alerts)),
        ("/recommendations", Admin, get(routes::recommendations)),
        ("/profile/cpu", Admin, get(profile::cpu_profile)),
        ("/openapi.json", Admin, get(openapi::document)),
    ]
}

fn build<S: Clone + Send + Sync + 'static>(
    optimizer: OptimizerRef,
    admin: AdminConfig,
) -> Result<Router<S>, ConfigError> {
    use perf_core::config::ConfigSection;
    admin.validate()?;
    if admin.tokens.is_empty() {
        tracing::warn!(
            "the admin API's mutation routes (POST, PUT) are mounted but no admin token is \
             configured: each is refused with 401, and PUT /config cannot add one; set \
             admin_tokens (PERF_ADMIN_TOKENS) to use them"
        );
    }
    let state = AppState {
        optimizer,
        admin: Arc::new(live::LiveAdmin::new(admin)),
    };
    let (mut probes, mut guarded) = (Router::new(), Router::new());
    for (path, access, route) in routes() {
        match access {
            Access::Probe => probes = probes.route(path, route),
            Access::Admin => guarded = guarded.route(path, route),
        }
    }
    let guarded = guarded
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state.admin),
            live::body_limit,
        ))
        // Outermost: the client, the token, the rate, then whether the route needs a token.
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::admin));
    let probes = probes.route_layer(middleware::from_fn_with_state(state.clone(), guard::probe));
    Ok(guarded.merge(probes).with_state(state))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document: serde_json::Value =
            serde_json::from_str(&super::openapi_json()).expect("JSON");
        let documented = document["paths"].as_object().expect("paths");
        for (path, ..) in super::routes() {
            if path != "/openapi.json" {
                assert!(documented.contains_key(path), "{path} is not documented");
            }
        }
        assert_eq!(
            documented.len(),
            super::routes().len() - 1,
            "nothing documented that is not served"
        );
        assert!(documented["/config"].get("put").is_some());
        assert!(documented["/config"].get("get").is_some());
        assert!(documented["/cache/manage"]["post"]["requestBody"].is_object());
    }
}
