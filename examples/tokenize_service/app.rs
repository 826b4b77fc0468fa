//! The tokenize service's options, handlers and router. `main.rs` runs it; the integration
//! test starts it in-process.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use perf::{PerformanceOptimizer, performance_monitor, tasks::TaskOutcome};
use serde::{Deserialize, Serialize};

use crate::tokens::{Encoding, ModelStats, Tokenizer};

/// The longest text taken, in bytes of UTF-8.
pub(crate) const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The most texts in one batch.
pub(crate) const MAX_BATCH: usize = 64;
/// Request bodies past these are refused (413) before they are parsed; JSON escapes can
/// double a text.
const MAX_BODY_BYTES: usize = 2 * MAX_TEXT_BYTES + 1024;
const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
/// How long a batch's tasks get before those unfinished are cancelled.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// L1 counts entries, not bytes, and a long text's tokens weigh as much as the text: L1 keeps
/// the hot ones and L2 (bounded in bytes, compressed) the rest.
const L1_ENTRIES: u64 = 1_000;

/// How the service runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    /// `false`: `#[cache_result]` calls straight through (the load test's baseline); the
    /// encoders stay cached either way.
    pub(crate) cache_enabled: bool,
    /// perf's settings from this TOML file, under `PERF_*` variables; without one, the
    /// example's own defaults.
    pub(crate) config: Option<PathBuf>,
}

impl Options {
    /// From `TOKENIZE_ADDR` (default 127.0.0.1:8100), `TOKENIZE_CACHE_ENABLED` (default true)
    /// and `PERF_CONFIG`.
    pub(crate) fn from_env() -> Result<Self, String> {
        let addr = std::env::var("TOKENIZE_ADDR").unwrap_or_else(|_| "127.0.0.1:8100".into());
        Ok(Self {
            addr: addr
                .parse()
                .map_err(|e| format!("TOKENIZE_ADDR={addr}: {e}"))?,
            cache_enabled: std::env::var("TOKENIZE_CACHE_ENABLED").map_or(true, |v| v != "false"),
            config: std::env::var_os("PERF_CONFIG")
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
        })
    }
}

#[derive(Clone)]
struct AppState {
    optimizer: &'static PerformanceOptimizer,
    tokenizer: Tokenizer,
}

/// Installs the optimizer, registers the encoders' cleanup hook and builds the router, with
/// the admin API at `/performance` and Prometheus at `/metrics`.
pub(crate) async fn build(
    options: &Options,
) -> Result<(Router, &'static PerformanceOptimizer), Box<dyn std::error::Error + Send + Sync>> {
    let prometheus = perf_http::install_prometheus()?;
    let (mut config, admin) =
        perf_http::load_config(options.config.as_deref()).map_err(|error| {
            match &options.config {
                Some(path) => format!("{}: {error}", path.display()),
                None => error.to_string(),
            }
        })?;
    config.cache.enabled = options.cache_enabled;
    if options.config.is_none() && std::env::var_os("PERF_CACHE_MAX_SIZE").is_none() {
        config.cache.max_size = L1_ENTRIES;
    }
    let tokenizer = Tokenizer::new(&config)?;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()?
        .install()?;
    tokenizer.register_cleanup_hook(optimizer.memory());

    let router = Router::new()
        .route(
            "/tokenize",
            post(post_tokenize).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route(
            "/tokenize/batch",
            post(post_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route("/tokenize/stats", get(get_stats))
        .with_state(AppState {
            optimizer,
            tokenizer,
        })
        .nest("/performance", perf_http::router(optimizer, admin)?)
        .merge(perf_http::metrics_router(prometheus));
    Ok((router, optimizer))
}

// ----- errors -----

/// A status and a message, answered as `{"error": message}`.
#[derive(Debug)]
pub(crate) struct AppError(StatusCode, String);

impl From<JsonRejection> for AppError {
    /// A body that is not JSON (400), not the expected shape (422) or too large (413).
    fn from(rejection: JsonRejection) -> Self {
        AppError(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn encoding(name: Option<&str>) -> Result<Encoding, AppError> {
    name.map_or(Ok(Encoding::DEFAULT), str::parse)
        .map_err(|error| AppError(StatusCode::BAD_REQUEST, error.to_string()))
}

fn check_length(text: &str, what: &str) -> Result<(), AppError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(AppError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{what} is {} bytes; at most {MAX_TEXT_BYTES} are taken",
                text.len()
            ),
        ));
    }
    Ok(())
}

// ----- handlers -----

#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeRequest {
    pub(crate) text: String,
    /// Default `cl100k_base`.
    pub(crate) encoding: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Tokenized {
    pub(crate) tokens: Vec<u32>,
    pub(crate) count: usize,
}

impl From<Vec<u32>> for Tokenized {
    fn from(tokens: Vec<u32>) -> Self {
        Self {
            count: tokens.len(),
            tokens,
        }
    }
}

/// `POST /tokenize {"text": "...", "encoding": "cl100k_base"}`.
#[performance_monitor("tokenize.post")]
async fn post_tokenize(
    State(state): State<AppState>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<Tokenized>, AppError> {
    let Json(request) = body?;
    let encoding = encoding(request.encoding.as_deref())?;
    check_length(&request.text, "the text")?;
    let tokens = state
        .tokenizer
        .tokenize(encoding, request.text)
        .await
        .map_err(|error| AppError(StatusCode::INTERNAL_SERVER_ERROR, error))?;
    Ok(Json(tokens.into()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchRequest {
    pub(crate) texts: Vec<String>,
    /// Default `cl100k_base`, for every text.
    pub(crate) encoding: Option<String>,
}

/// One text's outcome in a batch.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Tokenized(Tokenized),
    Failed { error: String },
}

#[derive(Debug, Serialize)]
pub(crate) struct BatchResponse {
    pub(crate) results: Vec<BatchItem>,
}

/// `POST /tokenize/batch {"texts": [...], "encoding": ...}`: one task a text on the task
/// manager, results in input order.
#[performance_monitor("tokenize.batch")]
async fn post_batch(
    State(state): State<AppState>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<BatchResponse>, AppError> {
    let Json(request) = body?;
    let encoding = encoding(request.encoding.as_deref())?;
    if request.texts.len() > MAX_BATCH {
        return Err(AppError(
            StatusCode::BAD_REQUEST,
            format!("{} texts; at most {MAX_BATCH} a batch", request.texts.len()),
        ));
    }
    for (i, text) in request.texts.iter().enumerate() {
        check_length(text, &format!("text {i}"))?;
    }
    let tasks = state.optimizer.tasks();
    let handles = tasks
        .batch_submit(request.texts.into_iter().map(|text| {
            let tokenizer = state.tokenizer.clone();
            async move { tokenizer.tokenize(encoding, text).await }
        }))
        .await
        // Only after a shutdown: the service is stopping.
        .map_err(|error| AppError(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
    let outcomes = tasks.wait_for_tasks(handles, Some(BATCH_TIMEOUT)).await;
    let results = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            TaskOutcome::Completed(tokens) => BatchItem::Tokenized(tokens.into()),
            TaskOutcome::Failed(error) => BatchItem::Failed { error },
            TaskOutcome::Panicked(message) => BatchItem::Failed {
                error: format!("panicked: {message}"),
            },
            TaskOutcome::TimedOut => BatchItem::Failed {
                error: "timed out".into(),
            },
            TaskOutcome::Cancelled => BatchItem::Failed {
                error: "cancelled".into(),
            },
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

#[derive(Debug, Serialize)]
pub(crate) struct Stats {
    pub(crate) cache_enabled: bool,
    pub(crate) models: ModelStats,
}

/// `GET /tokenize/stats`: the encoders built and held (the token cache is in
/// `/performance/cache/stats`).
async fn get_stats(State(state): State<AppState>) -> Json<Stats> {
    Json(Stats {
        cache_enabled: state.optimizer.cache().is_enabled(),
        models: state.tokenizer.model_stats(),
    })
}
