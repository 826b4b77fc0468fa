//! The OpenAPI 3 document of the admin API, served at `/openapi.json`.
//!
//! utoipa writes the paths, parameters and request bodies from the handlers' attributes.
//! Then, by hand, since perf-core's types know nothing of OpenAPI: the schemas of the
//! answers, the body of `PUT /config` (from [`HOT_FIELDS`](perf_core::HOT_FIELDS) and the
//! admin settings), and the refusals that every route can give, added to each operation in
//! one place as [`guard`](crate::guard) gives them in one place.

use std::sync::OnceLock;

use axum::Json;
use perf_core::PerformanceConfig;
use serde_json::{Map, Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{config::AdminConfig, error, profile, routes, update};

#[derive(OpenApi)]
#[openapi(
    info(title = "perf admin API", description = "Statistics and management of a perf optimizer."),
    servers((url = "/performance")),
    paths(
        routes::health,
        routes::stats,
        routes::memory_usage,
        routes::memory_cleanup,
        routes::cache_stats,
        routes::cache_manage,
        routes::task_stats,
        routes::task_manage,
        routes::database_stats,
        routes::database_optimize,
        routes::system_resources,
        routes::get_config,
        routes::put_config,
        routes::alerts,
        routes::recommendations,
        profile::cpu_profile,
    ),
    components(schemas(error::Body<'_>)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub(crate) async fn document() -> Json<Value> {
    Json(openapi().clone())
}

/// The whole document, built once.
pub(crate) fn openapi() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        complete(&mut document);
        document
    })
}

/// What utoipa leaves out: the answers' schemas, `PUT /config`'s body, the refusals.
fn complete(document: &mut Value) {
    let schemas = &mut document["components"]["schemas"];
    for (name, schema) in answer_schemas() {
        schemas[name] = schema;
    }
    schemas["ConfigUpdate"] = config_update_schema();
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if let Some((_, _, schema)) =
                ANSWERS.iter().find(|(m, p, _)| *m == method && *p == path)
            {
                operation["responses"]["200"]["content"] =
                    json!({ "application/json": { "schema": reference(schema) } });
            }
            if method == "put" && path == "/config" {
                operation["requestBody"]["content"]["application/json"]["schema"] =
                    reference("ConfigUpdate");
            }
            add_refusals(path, operation);
        }
    }
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

/// The refusals a route can give whatever it does: 429 everywhere, 401 and 403 on every
/// route but `/health` (reads need a token when `admin_require_token_for_reads`), 400 and 413
/// on those with a body, 500 everywhere. Every error answer is an `Error`.
fn add_refusals(path: &str, operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let responses = &mut operation["responses"];
    let mut add = |status: &str, description: &str| {
        if responses.get(status).is_none() {
            responses[status] = json!({ "description": description });
        }
    };
    add(
        "429",
        "over the caller's rate limit; `Retry-After` says when to try again",
    );
    add("500", "an internal error");
    if path != "/health" {
        add(
            "401",
            "no bearer token, where one is needed (mutations, the CPU profile, and reads when \
             `admin_require_token_for_reads`)",
        );
        add("403", "a bearer token that is not valid");
    }
    if has_body {
        add(
            "400",
            "a body that is not the JSON the route takes, naming the field",
        );
        add("413", "a body over `admin_body_limit_bytes`");
    }
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if !status.starts_with(['4', '5']) {
            continue;
        }
        response["content"] = json!({ "application/json": { "schema": reference("Error") } });
        let header = match status.as_str() {
            "429" => Some(("Retry-After", "seconds until a request will be allowed")),
            "401" => Some(("WWW-Authenticate", "`Bearer`")),
            _ => None,
        };
        if let Some((name, description)) = header {
            response["headers"] = json!({
                name: { "description": description, "required": true, "schema": { "type": "string" } }
            });
        }
    }
}

/// Each route's 200 answer: method, path, schema name.
const ANSWERS: &[(&str, &str, &str)] = &[
    ("get", "/health", "Health"),
    ("get", "/stats", "Stats"),
    ("get", "/memory/usage", "MemoryUsage"),
    ("post", "/memory/cleanup", "CleanupReport"),
    ("get", "/cache/stats", "CacheStats"),
    ("post", "/cache/manage", "CacheManaged"),
    ("get", "/tasks/stats", "TaskStats"),
    ("post", "/tasks/manage", "TasksCancelled"),
    ("get", "/database/stats", "QueryAnalysis"),
    ("post", "/database/optimize", "DatabaseOptimized"),
    ("get", "/system/resources", "SystemResources"),
    ("get", "/config", "Config"),
    ("put", "/config", "Config"),
    ("get", "/alerts", "Alerts"),
    ("get", "/recommendations", "Recommendations"),
];

/// An object with these properties, all required.
fn object(properties: Value) -> Value {
    let required: Vec<_> = properties
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The answers' schemas: the fields every answer has, with their types. Objects may gain
/// fields in any release, so none forbids others.
fn answer_schemas() -> Vec<(&'static str, Value)> {
    let count = json!({ "type": "integer", "minimum": 0 });
    let number = json!({ "type": "number" });
    let fraction = json!({ "type": "number", "minimum": 0 });
    let duration =
        json!({ "type": "string", "description": "a duration, such as `1m` or `250ms`" });
    let tier = object(
        json!({ "hits": count, "misses": count, "inserts": count, "evictions": count,
        "expirations": count, "decode_errors": count, "hit_rate": fraction,
        "entries": { "type": ["integer", "null"], "minimum": 0 },
        "bytes": { "type": ["integer", "null"], "minimum": 0 } }),
    );
    let cache = object(json!({ "hit_rate": fraction, "l1": tier, "l2": tier,
        "remote": { "oneOf": [tier, { "type": "null" }] }, "loads": { "type": "object" } }));
    let latency = object(
        json!({ "mean": number, "p50": number, "p95": number, "p99": number,
        "max": number }),
    );
    let tasks = object(
        json!({ "submitted": count, "completed": count, "failed": count,
        "cancelled": count, "timed_out": count, "panicked": count, "running": count,
        "queued": count, "max_workers": count, "failure_rate": fraction,
        "queue_wait": latency, "run_time": latency }),
    );
    let shape = object(json!({ "fingerprint": { "type": "string" },
        "normalized": { "type": "string" }, "query_type": { "type": "string" },
        "calls": count, "errors": count, "total_seconds": number, "mean_seconds": number,
        "max_seconds": number }));
    let shapes = json!({ "type": "array", "items": shape });
    let analysis = object(
        json!({ "shapes": count, "by_total_time": shapes, "slowest": shapes,
        "most_errors": shapes, "slow_queries": { "type": "array" }, "pools": { "type": "array" } }),
    );
    let sample = object(json!({ "rss_bytes": count, "usage_fraction": fraction,
        "limit_bytes": count, "limit_source": { "type": "string" } }));
    let system = object(json!({ "cpu_cores": count, "cpu_percent": number,
        "memory_percent": number, "disks": { "type": "array" } }));
    let alert = object(json!({ "kind": { "type": "string" },
        "severity": { "enum": ["warning", "critical"] }, "message": { "type": "string" },
        "observed": number, "threshold": number }));
    let nullable = |schema: &Value| json!({ "oneOf": [schema, { "type": "null" }] });
    vec![
        (
            "Health",
            object(json!({ "status": { "enum": ["ok", "degraded"] },
            "critical_alerts": count, "alerts": count })),
        ),
        (
            "Stats",
            object(
                json!({ "cache": cache, "memory": nullable(&sample), "tasks": tasks,
            "operations": { "type": "array", "items": { "type": "object" } },
            "database": analysis, "system": nullable(&system) }),
            ),
        ),
        (
            "MemoryUsage",
            object(json!({ "usage": sample, "state": { "type": "object" } })),
        ),
        (
            "CleanupReport",
            object(json!({ "reason": { "type": "string" },
            "freed_bytes": count, "rss_before_bytes": count, "rss_after_bytes": count,
            "duration": duration, "actions": { "type": "array", "items": object(json!({
                "name": { "type": "string" }, "freed_bytes": count,
                "detail": { "type": "string" } })) } })),
        ),
        ("CacheStats", cache),
        (
            "CacheManaged",
            json!({ "type": "object", "description":
            "`clear`: `{\"cleared\": true}`; `invalidate`: whether the key was there; \
             `invalidate_prefix`: how many entries were removed; `revoke`: \
             `{\"revoked\": true}`",
            "properties": { "cleared": { "type": "boolean" },
                "removed": { "type": ["boolean", "integer"] },
                "revoked": { "type": "boolean" } } }),
        ),
        ("TaskStats", tasks),
        ("TasksCancelled", object(json!({ "cancelled": count }))),
        ("QueryAnalysis", analysis.clone()),
        (
            "DatabaseOptimized",
            json!({ "description":
            "`analyze`: the analysis; `clear_cache`: how many cached results were dropped",
            "anyOf": [analysis, object(json!({ "removed": count }))] }),
        ),
        ("SystemResources", system),
        (
            "Config",
            json!({ "type": "object", "description":
            "every setting in force, by its configuration key; secrets shown as `***`",
            "properties": config_properties(), "required": ["admin_tokens", "max_workers"] }),
        ),
        (
            "Alerts",
            object(json!({ "alerts": { "type": "array", "items": alert },
            "at": number, "evaluated_at": { "type": ["number", "null"] },
            "window_seconds": number, "webhook": { "type": "object" } })),
        ),
        (
            "Recommendations",
            object(json!({ "recommendations": { "type": "array",
            "items": object(json!({ "kind": { "type": "string" },
                "message": { "type": "string" }, "figures": { "type": "array" } })) } })),
        ),
    ]
}

/// The settings `PUT /config` can change: perf-core's hot fields and every admin setting,
/// each typed as its default is, durations as text or whole seconds.
fn config_properties() -> Map<String, Value> {
    let mut properties = Map::new();
    let core = update::object(&PerformanceConfig::default()).unwrap_or_default();
    for field in perf_core::HOT_FIELDS {
        if let Some(value) = core.get(*field) {
            properties.insert((*field).to_owned(), typed_like(value));
        }
    }
    properties.insert(
        "admin_tokens".into(),
        json!({ "type": "object", "description":
            "tokens by name, replacing those in force; `***` keeps the token of that name",
            "additionalProperties": { "type": "string", "minLength": 3 } }),
    );
    properties.insert(
        "admin_require_token_for_reads".into(),
        json!({ "type": "boolean" }),
    );
    properties.insert(
        "admin_body_limit_bytes".into(),
        json!({ "type": "integer", "minimum": 0 }),
    );
    properties.insert(
        "admin_rate_limit_per_minute".into(),
        json!({ "type": "integer", "minimum": 0 }),
    );
    properties.insert(
        "admin_trusted_proxies".into(),
        json!({ "type": "array", "items": { "type": "string" },
            "description": "addresses and networks: `10.0.0.0/8`, `127.0.0.1`" }),
    );
    debug_assert!(
        update::object(&AdminConfig::default())
            .unwrap_or_default()
            .keys()
            .all(|key| properties.contains_key(key)),
        "every admin setting is described"
    );
    properties
}

/// A schema of `value`'s JSON type; a text default is a duration, also taken in seconds.
fn typed_like(value: &Value) -> Value {
    match value {
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(number) if number.is_f64() => json!({ "type": "number" }),
        Value::Number(_) => json!({ "type": "integer" }),
        Value::String(_) => json!({ "type": ["string", "integer"], "description":
            "a duration: `30s`, `5m`, `1h`, or whole seconds" }),
        _ => json!({}),
    }
}

/// `PUT /config`'s body: the settings to change. Any other key of the configuration may be
/// sent with its value in force (as `GET /config` shows it); a different value is 422.
fn config_update_schema() -> Value {
    json!({
        "type": "object",
        "description": "the settings to change, all or nothing. The keys below can change \
            at run time; any other configuration key is accepted only with the value in \
            force (so that `GET /config`'s document can be sent back), and is otherwise 422, \
            as is a value out of range. `***` keeps a field's value.",
        "properties": config_properties(),
    })
}
