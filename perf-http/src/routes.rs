//! The handlers. Work that blocks (sampling memory and the machine, cleanup) runs on tokio's
//! blocking threads.

use std::time::{Duration, SystemTime};

use axum::{
    Extension, Json,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
};
use perf_core::{Tier, cache::Revocation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AppState, auth::Caller, body::Object, error::ApiError, update};

type Answer = Result<Json<Value>, ApiError>;

fn to_json(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// Runs blocking work off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&perf_core::PerformanceOptimizer) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let optimizer = state.optimizer.clone();
    tokio::task::spawn_blocking(move || work(&optimizer))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// Runs a mutation and logs it: route, outcome, the token's name and the client.
async fn audited(
    route: &str,
    caller: Option<Extension<Caller>>,
    mutation: impl std::future::Future<Output = Answer>,
) -> Answer {
    let outcome = mutation.await;
    let (token, client) = match &caller {
        Some(Extension(Caller { token, client })) => (token.as_deref(), *client),
        None => (None, None),
    };
    let token = token.unwrap_or("none");
    let client = client.map_or_else(|| "unknown".to_owned(), |address| address.to_string());
    match &outcome {
        Ok(_) => tracing::info!(route, token, client, outcome = "ok", "admin mutation"),
        Err(error) => tracing::warn!(
            route,
            token,
            client,
            outcome = "refused",
            status = error.status.as_u16(),
            error = %error.message,
            "admin mutation"
        ),
    }
    outcome
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "ok, or degraded when a critical alert is raised")))]
pub(crate) async fn health(State(state): State<AppState>) -> Answer {
    let alerts = blocking(&state, |optimizer| optimizer.alerts()).await?;
    let critical = alerts
        .iter()
        .filter(|alert| alert.severity == perf_core::alerts::Severity::Critical)
        .count();
    to_json(json!({
        "status": if critical == 0 { "ok" } else { "degraded" },
        "critical_alerts": critical,
        "alerts": alerts.len(),
    }))
}

#[utoipa::path(get, path = "/stats", tag = "stats", responses((status = 200, description = "cache, memory, tasks, operations, database and system statistics")))]
pub(crate) async fn stats(State(state): State<AppState>) -> Answer {
    let snapshot = blocking(&state, |optimizer| optimizer.snapshot()).await?;
    let optimizer = &state.optimizer;
    to_json(json!({
        "cache": snapshot.cache,
        "memory": snapshot.memory,
        "tasks": snapshot.tasks,
        "operations": optimizer.monitor().snapshot(),
        "database": optimizer.query().analyze(),
        "system": snapshot.system,
    }))
}

#[utoipa::path(get, path = "/memory/usage", tag = "memory", responses((status = 200, description = "a fresh memory sample and the monitor's state"), (status = 503, description = "memory could not be sampled")))]
pub(crate) async fn memory_usage(State(state): State<AppState>) -> Answer {
    let usage = blocking(&state, |optimizer| optimizer.memory().usage()).await?;
    let usage =
        usage.map_err(|error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
    to_json(json!({ "usage": usage, "state": state.optimizer.memory().state() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cleanup {
    #[serde(default)]
    force: bool,
}

#[utoipa::path(post, path = "/memory/cleanup", tag = "memory", request_body = Cleanup, security(("bearer" = [])), responses((status = 200, description = "the cleanup report"), (status = 409, description = "skipped: below the threshold or too soon"), (status = 400, description = "bad body"), (status = 401, description = "no token"), (status = 403, description = "wrong token")))]
pub(crate) async fn memory_cleanup(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Object<Cleanup>, ApiError>,
) -> Answer {
    audited("/memory/cleanup", caller, async {
        let Object(Cleanup { force }) = body?;
        let report = blocking(&state, move |optimizer| {
            optimizer.memory().cleanup_memory(force)
        })
        .await?;
        match report {
            Ok(report) => to_json(report),
            Err(skipped) => Err(ApiError::new(StatusCode::CONFLICT, skipped.to_string())),
        }
    })
    .await
}

#[utoipa::path(get, path = "/cache/stats", tag = "cache", responses((status = 200, description = "every tier's statistics")))]
pub(crate) async fn cache_stats(State(state): State<AppState>) -> Answer {
    to_json(state.optimizer.cache().stats())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum CacheAction {
    Clear,
    Invalidate,
    InvalidatePrefix,
    /// A security invalidation: `written_before` or `key_id`.
    Revoke,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum CacheType {
    L1,
    L2,
    Redis,
    All,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheManage {
    action: CacheAction,
    #[serde(default = "all_tiers")]
    cache_type: CacheType,
    key: Option<String>,
    prefix: Option<String>,
    /// `revoke`: drop values written before this moment, `"now"` or RFC 3339
    /// (`2026-12-06T10:00:00Z`).
    written_before: Option<String>,
    /// `revoke`: drop values sealed under this key id of `cache_encryption_keys`.
    key_id: Option<String>,
}

fn all_tiers() -> CacheType {
    CacheType::All
}

#[utoipa::path(post, path = "/cache/manage", tag = "cache", request_body = CacheManage, security(("bearer" = [])), responses((status = 200, description = "what was removed"), (status = 400, description = "bad body"), (status = 422, description = "a field out of range"), (status = 401, description = "no token"), (status = 403, description = "wrong token"), (status = 502, description = "a cache tier (Redis) failed")))]
pub(crate) async fn cache_manage(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Object<CacheManage>, ApiError>,
) -> Answer {
    audited("/cache/manage", caller, async {
        let Object(request) = body?;
        let cache = state.optimizer.cache();
        let failed =
            |error: perf_core::Error| ApiError::new(StatusCode::BAD_GATEWAY, error.to_string());
        match request.action {
            CacheAction::Clear => {
                match request.cache_type {
                    CacheType::L1 => cache.clear(Tier::L1).await,
                    CacheType::L2 => cache.clear(Tier::L2).await,
                    CacheType::Redis => cache.clear(Tier::Redis).await,
                    CacheType::All => cache.clear_all().await,
                }
                .map_err(failed)?;
                to_json(json!({ "cleared": true }))
            }
            CacheAction::Invalidate => {
                let key = request
                    .key
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| ApiError::invalid("key", "invalidate needs a non-empty key"))?;
                let removed = cache.delete(&key).await.map_err(|error| match error {
                    perf_core::Error::KeyTooLong { .. } => {
                        ApiError::invalid("key", error.to_string())
                    }
                    other => failed(other),
                })?;
                to_json(json!({ "removed": removed }))
            }
            CacheAction::InvalidatePrefix => {
                let prefix = request
                    .prefix
                    .filter(|prefix| !prefix.is_empty())
                    .ok_or_else(|| {
                        ApiError::invalid("prefix", "invalidate_prefix needs a non-empty prefix")
                    })?;
                let removed = cache.invalidate_prefix(&prefix).await.map_err(failed)?;
                to_json(json!({ "removed": removed }))
            }
            CacheAction::Revoke => {
                let revocation = revocation(request.written_before, request.key_id)?;
                cache
                    .invalidate_for_security(revocation)
                    .await
                    .map_err(|error| match error {
                        perf_core::Error::Config(_) => {
                            ApiError::invalid("key_id", error.to_string())
                        }
                        other => failed(other),
                    })?;
                to_json(json!({ "revoked": true }))
            }
        }
    })
    .await
}

/// What a `revoke` names: exactly one of a moment and a key id.
fn revocation(
    written_before: Option<String>,
    key_id: Option<String>,
) -> Result<Revocation, ApiError> {
    match (written_before, key_id) {
        (Some(moment), None) => {
            let moment = if moment == "now" {
                SystemTime::now()
            } else {
                humantime::parse_rfc3339_weak(&moment).map_err(|error| {
                    ApiError::invalid(
                        "written_before",
                        format!("{error}: expected \"now\" or RFC 3339 (2026-12-06T10:00:00Z)"),
                    )
                })?
            };
            if moment > SystemTime::now() {
                return Err(ApiError::invalid(
                    "written_before",
                    "must not be in the future (it would refuse values not yet written)",
                ));
            }
            Ok(Revocation::WrittenBefore(moment))
        }
        (None, Some(id)) if !id.is_empty() => Ok(Revocation::KeyId(id)),
        _ => Err(ApiError::invalid(
            "written_before",
            "revoke needs exactly one of written_before and key_id",
        )),
    }
}

#[utoipa::path(get, path = "/tasks/stats", tag = "tasks", responses((status = 200, description = "the task manager's statistics")))]
pub(crate) async fn task_stats(State(state): State<AppState>) -> Answer {
    to_json(state.optimizer.tasks().stats())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum TaskAction {
    Cancel,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskManage {
    action: TaskAction,
}

#[utoipa::path(post, path = "/tasks/manage", tag = "tasks", request_body = TaskManage, security(("bearer" = [])), responses((status = 200, description = "how many tasks were cancelled"), (status = 400, description = "bad body"), (status = 401, description = "no token"), (status = 403, description = "wrong token")))]
pub(crate) async fn task_manage(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Object<TaskManage>, ApiError>,
) -> Answer {
    audited("/tasks/manage", caller, async {
        let Object(TaskManage { action }) = body?;
        match action {
            TaskAction::Cancel => {
                let tasks = state.optimizer.tasks();
                let stats = tasks.stats();
                tasks.cancel_all();
                to_json(json!({ "cancelled": stats.queued + stats.running }))
            }
        }
    })
    .await
}

#[utoipa::path(get, path = "/database/stats", tag = "database", responses((status = 200, description = "query shapes by total time, slowest and most failing, and recent slow queries")))]
pub(crate) async fn database_stats(State(state): State<AppState>) -> Answer {
    to_json(state.optimizer.query().analyze())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum DatabaseAction {
    Analyze,
    ClearCache,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseOptimize {
    action: DatabaseAction,
}

#[utoipa::path(post, path = "/database/optimize", tag = "database", request_body = DatabaseOptimize, security(("bearer" = [])), responses((status = 200, description = "the analysis, or how many cached results were dropped"), (status = 400, description = "bad body"), (status = 401, description = "no token"), (status = 403, description = "wrong token"), (status = 502, description = "a cache tier (Redis) failed")))]
pub(crate) async fn database_optimize(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Object<DatabaseOptimize>, ApiError>,
) -> Answer {
    audited("/database/optimize", caller, async {
        let Object(DatabaseOptimize { action }) = body?;
        let query = state.optimizer.query();
        match action {
            DatabaseAction::Analyze => to_json(query.analyze()),
            DatabaseAction::ClearCache => {
                let removed = query
                    .clear_cached_results()
                    .await
                    .map_err(|error| ApiError::new(StatusCode::BAD_GATEWAY, error.to_string()))?;
                to_json(json!({ "removed": removed }))
            }
        }
    })
    .await
}

#[utoipa::path(get, path = "/system/resources", tag = "system", responses((status = 200, description = "CPU, memory, disks and network")))]
pub(crate) async fn system_resources(State(state): State<AppState>) -> Answer {
    to_json(blocking(&state, |optimizer| optimizer.system().sample()).await?)
}

/// perf-core's secret setting, shown masked; a PUT that sends the mask back leaves it as is.
const WEBHOOK_URL: &str = "alert_webhook_url";
const ENCRYPTION_KEYS: &str = "cache_encryption_keys";

/// The configuration in force and the admin API's own, side by side as in the configuration
/// file; admin tokens shown by name only, the webhook URL masked.
#[utoipa::path(get, path = "/config", tag = "config", responses((status = 200, description = "the configuration in force, tokens and the webhook URL shown as `***`; PUT takes it back as it is")))]
pub(crate) async fn get_config(State(state): State<AppState>) -> Answer {
    let mut fields = update::object(&*state.optimizer.config())?;
    if let Some(url) = fields.get_mut(WEBHOOK_URL)
        && !url.is_null()
    {
        *url = Value::String(update::MASK.into());
    }
    // The key ring whole: its ids are no secret, but nothing of it can change while running.
    if let Some(keys) = fields.get_mut(ENCRYPTION_KEYS)
        && keys.as_array().is_some_and(|keys| !keys.is_empty())
    {
        *keys = Value::String(update::MASK.into());
    }
    let mut admin = update::object(&*state.admin.config())?;
    if let Some(tokens) = admin.get_mut("admin_tokens").and_then(Value::as_object_mut) {
        for token in tokens.values_mut() {
            *token = Value::String(update::MASK.into());
        }
    }
    fields.extend(admin);
    Ok(Json(Value::Object(fields)))
}

/// A partial update: the fields given replace the current ones, all or nothing; only
/// hot-updatable fields may change.
#[utoipa::path(put, path = "/config", tag = "config", request_body(content = serde_json::Value, description = "the fields to change (the seed's names too: `tracemalloc_enabled`); only hot-updatable fields may change; `***` keeps a field's value"), security(("bearer" = [])), responses((status = 200, description = "the configuration now in force"), (status = 400, description = "not a JSON object"), (status = 422, description = "a field that cannot change at run time, out of range, unknown or of the wrong type, named"), (status = 401, description = "no token"), (status = 403, description = "wrong token")))]
pub(crate) async fn put_config(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<serde_json::Map<String, Value>>, JsonRejection>,
) -> Answer {
    audited("/config", caller, async {
        let Json(changes) = body?;
        update::apply(&state, changes)?;
        get_config(State(state.clone())).await
    })
    .await
}

/// The alerts firing, from the background evaluation over `alert_window` (evaluated now when
/// the optimizer runs no background loops), with what the webhook did.
#[utoipa::path(get, path = "/alerts", tag = "alerts", responses((status = 200, description = "the alerts firing, most severe first, each with the time it started; when they were evaluated, over which window; the webhook's counts")))]
pub(crate) async fn alerts(State(state): State<AppState>) -> Answer {
    let state = blocking(&state, |optimizer| optimizer.alert_state()).await?;
    to_json(json!({
        "alerts": state.firing,
        "at": unix_seconds(SystemTime::now()),
        "evaluated_at": state.evaluated_at.map(unix_seconds),
        "window_seconds": state.window.as_secs_f64(),
        "webhook": state.webhook,
    }))
}

#[utoipa::path(get, path = "/recommendations", tag = "alerts", responses((status = 200, description = "recommended changes with their figures")))]
pub(crate) async fn recommendations(State(state): State<AppState>) -> Answer {
    let recommendations = blocking(&state, |optimizer| optimizer.recommendations()).await?;
    to_json(json!({ "recommendations": recommendations }))
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
