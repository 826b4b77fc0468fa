//! Every route through the router, over real components.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use perf_core::{PerformanceConfig, PerformanceOptimizer, Tier};
use perf_http::{AdminConfig, Secret};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "ops-token-0123456789";

fn optimizer() -> Arc<PerformanceOptimizer> {
    Arc::new(PerformanceOptimizer::builder().build().expect("valid"))
}

fn admin() -> AdminConfig {
    let mut admin = AdminConfig::default();
    admin.tokens = BTreeMap::from([("ops".to_string(), Secret::new(TOKEN))]);
    admin.body_limit_bytes = 4096;
    admin
}

/// The router with [`admin`]'s settings.
fn app(optimizer: Arc<PerformanceOptimizer>) -> Router {
    perf_http::router_for(optimizer, admin()).expect("valid admin settings")
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("answered");
    let status = response.status();
    let authenticate = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, authenticate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_route_answers_json() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    optimizer
        .cache()
        .set("ad:1", 1u8, Tier::L2, None)
        .await
        .expect("stored");
    for path in [
        "/health",
        "/stats",
        "/memory/usage",
        "/cache/stats",
        "/tasks/stats",
        "/database/stats",
        "/system/resources",
        "/config",
        "/alerts",
        "/recommendations",
        "/openapi.json",
    ] {
        let (status, body, _) = call(&app, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.is_object(), "{path}: {body}");
    }
    let (_, health, _) = call(&app, Method::GET, "/health", None, None).await;
    assert!(health["status"] == "ok" || health["status"] == "degraded");
    let (_, stats, _) = call(&app, Method::GET, "/cache/stats", None, None).await;
    assert_eq!(stats["l2"]["entries"], 1);
    for field in [
        "stale_served",
        "soft_timeouts",
        "hard_timeouts",
        "refreshes",
        "shared_failures",
    ] {
        assert_eq!(stats["loads"][field], 0, "{field} in {stats}");
    }
    let (_, config, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(
        config["admin_tokens"]["ops"], "***",
        "tokens are never shown"
    );
    assert_eq!(config["max_workers"], 10);
    let (_, document, _) = call(&app, Method::GET, "/openapi.json", None, None).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3'))
    );
    assert!(document["paths"]["/cache/manage"]["post"].is_object());
}

#[tokio::test]
async fn mutations_need_a_valid_token() {
    let app = app(optimizer());
    let body = json!({ "action": "cancel" });
    let (status, error, authenticate) = call(
        &app,
        Method::POST,
        "/tasks/manage",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(authenticate.as_deref(), Some("Bearer"));
    assert!(error["error"].as_str().is_some_and(|e| e.contains("token")));
    let (status, ..) = call(
        &app,
        Method::POST,
        "/tasks/manage",
        Some("wrong-token-0123456"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer, _) =
        call(&app, Method::POST, "/tasks/manage", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn reads_need_a_token_when_configured() {
    let mut admin = admin();
    admin.require_token_for_reads = true;
    let app = perf_http::router_for(optimizer(), admin).expect("valid");
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", Some(TOKEN), None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_memory_tasks_and_database_are_managed() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    let cache = optimizer.cache();
    for key in ["ad:1", "ad:2", "user:1"] {
        cache.set(key, 1u8, Tier::L2, None).await.expect("stored");
    }
    let manage = |body: Value| call(&app, Method::POST, "/cache/manage", Some(TOKEN), Some(body));
    let (status, answer, _) = manage(json!({ "action": "invalidate", "key": "ad:1" })).await;
    assert_eq!(
        (status, answer["removed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, answer, _) =
        manage(json!({ "action": "invalidate_prefix", "prefix": "ad:" })).await;
    // ad:2, in L1 and in L2.
    assert_eq!(
        (status, answer["removed"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, ..) = manage(json!({ "action": "clear", "cache_type": "l1" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cache.stats().l1.entries, Some(0));
    assert_eq!(cache.stats().l2.entries, Some(1), "only L1 was cleared");

    let (status, error, _) = manage(json!({ "action": "invalidate" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["field"], "key");
    let (status, error, _) = manage(json!({ "action": "nuke" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["field"], "action", "{error}");
    let (status, error, _) = manage(json!({ "action": "clear", "cache_type": "l9" })).await;
    assert_eq!(
        (status, error["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("cache_type"))
    );
    assert_eq!(
        cache.stats().l2.entries,
        Some(1),
        "refused requests changed nothing"
    );

    let (status, report, _) = call(
        &app,
        Method::POST,
        "/memory/cleanup",
        Some(TOKEN),
        Some(json!({ "force": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["reason"], "forced");
    let (status, error, _) = call(
        &app,
        Method::POST,
        "/memory/cleanup",
        Some(TOKEN),
        Some(json!({ "force": "yes" })),
    )
    .await;
    assert_eq!(
        (status, error["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("force"))
    );

    optimizer.query().record(
        "select",
        Some("SELECT * FROM ads WHERE id = 1"),
        std::time::Duration::from_millis(3),
        false,
        None,
    );
    let (status, report, _) = call(
        &app,
        Method::POST,
        "/database/optimize",
        Some(TOKEN),
        Some(json!({ "action": "analyze" })),
    )
    .await;
    assert_eq!(
        (status, report["shapes"].clone()),
        (StatusCode::OK, json!(1))
    );

    let loads = std::sync::atomic::AtomicUsize::new(0);
    let read = async || {
        optimizer
            .query()
            .cached_query("SELECT * FROM ads WHERE id = ?", &(1,), None, || async {
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, perf_core::Error>(7u8)
            })
            .await
    };
    read().await.expect("loaded");
    read().await.expect("cached");
    let (status, cleared, _) = call(
        &app,
        Method::POST,
        "/database/optimize",
        Some(TOKEN),
        Some(json!({ "action": "clear_cache" })),
    )
    .await;
    assert_eq!(
        (status, cleared["removed"].clone()),
        (StatusCode::OK, json!(2)),
        "the result, in L1 and L2"
    );
    read().await.expect("loaded again");
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_config_update_applies_hot_fields_and_refuses_the_rest() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    let put = |body: Value| call(&app, Method::PUT, "/config", Some(TOKEN), Some(body));

    let (status, config, _) = put(json!({ "max_workers": 7, "task_timeout": "45s" })).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["max_workers"], 7);
    assert_eq!(optimizer.tasks().stats().max_workers, 7, "in force");

    for (body, field) in [
        (json!({ "cache_max_size": 5 }), "cache_max_size"),
        (json!({ "max_workers": 0 }), "max_workers"),
        (json!({ "bogus": 1 }), "bogus"),
        (json!({ "max_workers": "many" }), "max_workers"),
        (json!({ "cache_ttl": "soon" }), "cache_ttl"),
        (
            json!({ "admin_body_limit_bytes": -1 }),
            "admin_body_limit_bytes",
        ),
        (
            json!({ "admin_body_limit_bytes": 10 }),
            "admin_body_limit_bytes",
        ),
        (
            json!({ "admin_tokens": { "ops": "short" } }),
            "admin_tokens",
        ),
        (json!({ "admin_tokens": { "new": "***" } }), "admin_tokens"),
        (json!({ "admin_tokens": {} }), "admin_tokens"),
        (
            json!({ "tracemalloc_enabled": false }),
            "allocation_tracking_enabled",
        ),
    ] {
        let (status, error, _) = put(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(field)),
            "{body}: {error}"
        );
    }
    let (status, ..) = put(json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not an object");
    assert_eq!(
        optimizer.config().tasks.max_workers,
        7,
        "refused updates changed nothing"
    );
    assert_eq!(
        optimizer.config().cache.max_size,
        PerformanceConfig::default().cache.max_size
    );
}

/// The seed's own update: the new TTL for entries written afterwards, 15 tasks at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_config_update_is_applied() {
    let (clock, mock) = perf_core::cache::Clock::mock();
    let optimizer = Arc::new(
        PerformanceOptimizer::builder()
            .clock(clock)
            .build()
            .expect("valid"),
    );
    let app = app(Arc::clone(&optimizer));
    let body = json!({ "cache_ttl": 7200, "max_workers": 15 });
    let (status, config, _) = call(&app, Method::PUT, "/config", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        (config["cache_ttl"].as_str(), config["max_workers"].as_u64()),
        (Some("2h"), Some(15))
    );
    let (_, config, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(
        (config["cache_ttl"].as_str(), config["max_workers"].as_u64()),
        (Some("2h"), Some(15))
    );

    let cache = optimizer.cache();
    cache
        .set("ad:1", 1u8, Tier::L1, None)
        .await
        .expect("stored");
    mock.increment(std::time::Duration::from_secs(7199));
    assert!(
        cache
            .get::<u8>("ad:1", Tier::L1)
            .await
            .expect("read")
            .is_some(),
        "2 h, not 1 h"
    );
    mock.increment(std::time::Duration::from_secs(2));
    assert!(
        cache
            .get::<u8>("ad:1", Tier::L1)
            .await
            .expect("read")
            .is_none(),
        "expired at 2 h"
    );

    // 15 tasks meet at a barrier with the test: only if all 15 run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut handles = Vec::new();
    for _ in 0..15 {
        let barrier = Arc::clone(&barrier);
        let task = async move {
            barrier.wait().await;
            Ok::<_, std::io::Error>(())
        };
        handles.push(optimizer.tasks().submit(task).await.expect("queued"));
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), barrier.wait())
        .await
        .expect("15 tasks ran at once");
    let outcomes = optimizer.tasks().wait_for_tasks(handles, None).await;
    assert_eq!(outcomes.len(), 15);
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, perf_core::tasks::TaskOutcome::Completed(_)))
    );
}

/// The document GET returns, PUT back as it is, is accepted and changes nothing: the masked
/// tokens are kept.
#[tokio::test]
async fn get_then_put_round_trips() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    let (_, before, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(before["admin_tokens"]["ops"], "***");
    let (status, after, _) = call(
        &app,
        Method::PUT,
        "/config",
        Some(TOKEN),
        Some(before.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after, before);
    assert_eq!(*optimizer.config(), PerformanceConfig::default());
    let (status, ..) = call(&app, Method::PUT, "/config", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "the token still works");
}

/// One field that cannot change refuses the whole update.
#[tokio::test]
async fn a_cold_field_refuses_the_whole_update() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    let body = json!({ "cache_ttl": 7200, "admin_rate_limit_per_minute": 5, "cache_max_size": 5 });
    let (status, error, _) = call(&app, Method::PUT, "/config", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["field"], "cache_max_size");
    assert_eq!(
        *optimizer.config(),
        PerformanceConfig::default(),
        "nothing applied"
    );
    assert_eq!(
        optimizer.cache().default_ttl(),
        std::time::Duration::from_secs(3600)
    );
    let (_, config, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(
        config["admin_rate_limit_per_minute"], 600,
        "nothing applied"
    );
}

/// The admin API's own settings change while it serves: tokens, reads, body limit, rate.
#[tokio::test]
async fn the_admin_settings_change_at_run_time() {
    let app = app(optimizer());
    let new_token = "new-token-0123456789";
    let body = json!({
        "admin_tokens": { "ops": "***", "ci": new_token },
        "admin_require_token_for_reads": true,
        "admin_body_limit_bytes": 65536,
    });
    let (status, config, _) = call(&app, Method::PUT, "/config", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["admin_tokens"], json!({ "ci": "***", "ops": "***" }));
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", None, None).await.0,
        StatusCode::UNAUTHORIZED,
        "reads need a token now"
    );
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", Some(new_token), None)
            .await
            .0,
        StatusCode::OK,
        "the new token is valid"
    );
    let large = json!({ "action": "invalidate", "key": "k".repeat(10_000) });
    let (status, ..) = call(
        &app,
        Method::POST,
        "/cache/manage",
        Some(TOKEN),
        Some(large),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "past 4 KiB, within 64 KiB: read, and the key is too long"
    );

    let body = json!({ "admin_rate_limit_per_minute": 2, "admin_tokens": { "ci": "***" } });
    let (status, ..) = call(&app, Method::PUT, "/config", Some(new_token), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", Some(TOKEN), None)
            .await
            .0,
        StatusCode::FORBIDDEN,
        "the removed token is refused"
    );
    for _ in 0..2 {
        assert_eq!(
            call(&app, Method::GET, "/cache/stats", Some(new_token), None)
                .await
                .0,
            StatusCode::OK,
            "the token's own allowance: the wrong token spent the address's"
        );
    }
    assert_eq!(
        call(&app, Method::GET, "/cache/stats", Some(new_token), None)
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS,
        "the new rate: two a minute, both used"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let app = app(optimizer());
    let huge = json!({ "action": "invalidate", "key": "k".repeat(10_000) });
    let (status, ..) = call(&app, Method::POST, "/cache/manage", Some(TOKEN), Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_client_past_its_rate_gets_429_with_retry_after() {
    let mut admin = admin();
    admin.rate_limit_per_minute = 5;
    let app = perf_http::router_for(optimizer(), admin).expect("valid");
    for _ in 0..5 {
        assert_eq!(
            call(&app, Method::GET, "/cache/stats", None, None).await.0,
            StatusCode::OK
        );
    }
    let response = app
        .clone()
        .oneshot(
            Request::get("/cache/stats")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=12).contains(&retry_after),
        "one request back every 12 s: {retry_after}"
    );
}

#[test]
fn bad_admin_settings_are_refused_with_their_field() {
    let mut admin = AdminConfig::default();
    admin.tokens = BTreeMap::from([("ops".to_string(), Secret::new("short"))]);
    let Err(perf_http::ConfigError::Invalid(errors)) =
        perf_http::router_for::<()>(optimizer(), admin)
    else {
        panic!("a short token is refused");
    };
    assert_eq!(errors[0].field, "admin_tokens");
}

/// An app's own state, as an axum service has one.
#[derive(Clone)]
struct ServiceState {
    greeting: &'static str,
}

#[tokio::test]
async fn the_admin_api_nests_and_merges_into_an_app_with_its_own_state() {
    use axum::{extract::State, routing::get};

    let app: Router<ServiceState> = Router::new()
        .route(
            "/hello",
            get(|State(state): State<ServiceState>| async move { state.greeting }),
        )
        .nest(
            "/performance",
            perf_http::router_for(optimizer(), admin()).expect("valid"),
        )
        .merge(perf_http::metrics_router(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
        ));
    let app: Router = app.with_state(ServiceState { greeting: "hi" });

    let (status, body, _) = call(&app, Method::GET, "/performance/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&app, Method::GET, "/performance/stats", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let hello = app
        .clone()
        .oneshot(Request::get("/hello").body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    assert_eq!(hello.status(), StatusCode::OK);
    let text = hello.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&text[..], b"hi");
    let metrics = app
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert_eq!(metrics.status(), StatusCode::OK);
}

/// Memory at 95% of a 1 GiB limit: the memory alert fires, critical.
struct NearlyFull;

impl perf_core::memory::UsageSource for NearlyFull {
    fn sample(&self) -> std::io::Result<perf_core::memory::MemoryUsage> {
        Ok(perf_core::memory::MemoryUsage {
            rss_bytes: 973 << 20,
            virtual_bytes: 2 << 30,
            allocator: None,
            tracked: None,
            system_total_bytes: 8 << 30,
            system_available_bytes: 4 << 30,
            limit_bytes: 1 << 30,
            limit_source: perf_core::memory::LimitSource::Configured,
            usage_fraction: 0.95,
        })
    }
}

#[tokio::test]
async fn alerts_show_their_state_and_the_webhook_url_stays_hidden() {
    let mut config = PerformanceConfig::default();
    let url = "http://127.0.0.1:9/hooks/s3cret-token";
    config.alerts.webhook_url = Some(Secret::new(url));
    let optimizer = Arc::new(
        PerformanceOptimizer::builder()
            .config(config)
            .memory_source(NearlyFull)
            .build()
            .expect("valid"),
    );
    assert!(!format!("{:?}", optimizer.config()).contains("s3cret"));
    let app = app(Arc::clone(&optimizer));

    // No background loops: evaluated on the spot, and the webhook's batch dropped (counted).
    let (status, alerts, _) = call(&app, Method::GET, "/alerts", None, None).await;
    assert_eq!(status, StatusCode::OK, "{alerts}");
    let first = &alerts["alerts"][0];
    assert_eq!(first["kind"], "memory_usage", "{alerts}");
    assert_eq!(first["severity"], "critical");
    assert_eq!(
        (first["observed"].as_f64(), first["threshold"].as_f64()),
        (Some(0.95), Some(0.8))
    );
    let since = first["since"].as_f64().expect("since");
    assert_eq!(alerts["evaluated_at"].as_f64(), Some(since));
    assert_eq!(alerts["window_seconds"], 300.0);
    assert_eq!(alerts["webhook"]["dropped"], 1, "{alerts}");
    // Still firing: the same start.
    let (_, again, _) = call(&app, Method::GET, "/alerts", None, None).await;
    assert_eq!(again["alerts"][0]["since"].as_f64(), Some(since));
    let (_, health, _) = call(&app, Method::GET, "/health", None, None).await;
    assert_eq!(health["status"], "degraded");

    let (_, shown, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(shown["alert_webhook_url"], "***");
    assert!(!shown.to_string().contains("s3cret"));
    // The mask sent back leaves the URL as it is.
    let (status, body, _) = call(
        &app,
        Method::PUT,
        "/config",
        Some(TOKEN),
        Some(json!({ "alert_webhook_url": "***", "max_workers": 4 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kept = optimizer.config().alerts.webhook_url.clone();
    assert_eq!(kept.as_ref().map(Secret::expose), Some(url));
}

/// A request with its own `Authorization` header value.
async fn call_authorized(
    app: &Router,
    method: Method,
    path: &str,
    authorization: &str,
) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, authorization);
    let body = if path == "/tasks/manage" {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from(json!({ "action": "cancel" }).to_string())
    } else {
        Body::empty()
    };
    let request = request.body(body).expect("request");
    app.clone()
        .oneshot(request)
        .await
        .expect("answered")
        .status()
}

/// RFC 9110: the scheme in any case, whitespace around the value and after the scheme.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = app(optimizer());
    for authorization in [
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR {TOKEN}"),
        format!("  Bearer   {TOKEN}  "),
    ] {
        assert_eq!(
            call_authorized(&app, Method::POST, "/tasks/manage", &authorization).await,
            StatusCode::OK,
            "{authorization:?}"
        );
    }
    for authorization in [
        format!("Basic {TOKEN}"),
        "Bearer".to_owned(),
        TOKEN.to_owned(),
    ] {
        assert_eq!(
            call_authorized(&app, Method::POST, "/tasks/manage", &authorization).await,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: not a bearer token"
        );
    }
}

/// A token that is the right one cut short or run on is as wrong as any other.
#[tokio::test]
async fn a_token_of_another_length_is_refused() {
    let app = app(optimizer());
    for wrong in [&TOKEN[..TOKEN.len() - 1], &format!("{TOKEN}x"), "x"] {
        assert_eq!(
            call_authorized(
                &app,
                Method::POST,
                "/tasks/manage",
                &format!("Bearer {wrong}")
            )
            .await,
            StatusCode::FORBIDDEN,
            "{wrong:?}"
        );
    }
}

/// Liveness never needs a token, and does not spend the admin routes' allowance.
#[tokio::test]
async fn health_is_open_even_when_reads_need_a_token() {
    let mut admin = admin();
    admin.require_token_for_reads = true;
    admin.rate_limit_per_minute = 2;
    let app = perf_http::router_for(optimizer(), admin).expect("valid");
    for token in [None, Some("wrong-token-0123456"), Some(TOKEN)] {
        let (status, body, _) = call(&app, Method::GET, "/health", token, None).await;
        assert_eq!(status, StatusCode::OK, "{token:?}: {body}");
    }
    for _ in 0..2 {
        assert_eq!(
            call(&app, Method::GET, "/stats", None, None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        call(&app, Method::GET, "/stats", None, None).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "two a minute for the admin routes, spent"
    );
    for _ in 0..10 {
        assert_eq!(
            call(&app, Method::GET, "/health", None, None).await.0,
            StatusCode::OK,
            "probes are counted apart, at no less than 600 a minute"
        );
    }
}

/// Resolves `$ref`s to `#/components/schemas/...`.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Whether `value` fits `schema`, as far as this document's schemas go: types, required
/// properties, properties, items, oneOf and anyOf, enums.
fn conforms(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(document, schema);
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(options) = schema[alternatives].as_array() {
            return options
                .iter()
                .find(|option| conforms(document, option, value, at).is_ok())
                .map(|_| ())
                .ok_or_else(|| format!("{at}: {value} fits none of {alternatives}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |kind: &str| match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|kind| fits(kind)) {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: no `{name}` in {value}"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if let Some(field) = object.get(name) {
                    conforms(document, property, field, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            conforms(document, items, item, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

/// Every operation documents every status it can give, each error an `Error`; the answers
/// fit their schemas; `PUT /config` takes every hot field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_answer() {
    let optimizer = optimizer();
    let app = app(Arc::clone(&optimizer));
    let (_, document, _) = call(&app, Method::GET, "/openapi.json", None, None).await;
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("operations") {
            let responses = operation["responses"].as_object().expect("responses");
            let mut expected = vec!["200", "429", "500"];
            if path != "/health" {
                expected.extend(["401", "403"]);
            }
            if operation.get("requestBody").is_some() {
                expected.extend(["400", "413"]);
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            for (status, response) in responses {
                let schema = &response["content"]["application/json"]["schema"];
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                } else if path != "/profile/cpu" {
                    assert!(
                        schema["$ref"].is_string(),
                        "{method} {path} {status}: {response}"
                    );
                }
            }
        }
    }
    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error"]), "{error}");

    let update = resolve(
        &document,
        &document["paths"]["/config"]["put"]["requestBody"]["content"]["application/json"]["schema"],
    );
    for field in perf_core::HOT_FIELDS.iter().chain(&[
        "admin_tokens",
        "admin_require_token_for_reads",
        "admin_body_limit_bytes",
        "admin_rate_limit_per_minute",
        "admin_trusted_proxies",
    ]) {
        assert!(
            update["properties"][field].is_object(),
            "PUT /config: no {field}"
        );
    }
    assert_eq!(update["properties"]["max_workers"]["type"], "integer");
    assert_eq!(update["properties"]["cache_enabled"]["type"], "boolean");

    // The answers, each against its schema.
    optimizer.query().record(
        "select",
        Some("SELECT * FROM ads WHERE id = 1"),
        std::time::Duration::from_millis(3),
        false,
        None,
    );
    optimizer
        .cache()
        .set("ad:1", 1u8, Tier::L2, None)
        .await
        .expect("stored");
    let mutations = [
        ("/memory/cleanup", json!({ "force": true })),
        (
            "/cache/manage",
            json!({ "action": "invalidate", "key": "ad:1" }),
        ),
        (
            "/cache/manage",
            json!({ "action": "invalidate_prefix", "prefix": "ad:" }),
        ),
        ("/cache/manage", json!({ "action": "clear" })),
        ("/tasks/manage", json!({ "action": "cancel" })),
        ("/database/optimize", json!({ "action": "analyze" })),
        ("/database/optimize", json!({ "action": "clear_cache" })),
    ];
    let mut answered = Vec::new();
    for (path, item) in paths {
        if item.get("get").is_some() && path != "/profile/cpu" {
            answered.push((
                "get",
                path.as_str(),
                call(&app, Method::GET, path, None, None).await,
            ));
        }
    }
    for (path, body) in mutations {
        answered.push((
            "post",
            path,
            call(&app, Method::POST, path, Some(TOKEN), Some(body)).await,
        ));
    }
    let put = call(
        &app,
        Method::PUT,
        "/config",
        Some(TOKEN),
        Some(json!({ "max_workers": 4 })),
    )
    .await;
    answered.push(("put", "/config", put));
    let refused = call(&app, Method::POST, "/cache/manage", None, Some(json!({}))).await;
    answered.push(("post", "/cache/manage", refused));
    for (method, path, (status, body, _)) in answered {
        let schema = &paths[path][method]["responses"][status.as_str()]["content"]["application/json"]
            ["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: {status} is not documented"
        );
        if let Err(mismatch) = conforms(&document, schema, &body, &format!("{method} {path}")) {
            panic!("{mismatch}");
        }
    }
}

/// serde reads a struct from an array of its fields too; the API takes objects only.
#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused() {
    let app = app(optimizer());
    for (path, body) in [
        ("/memory/cleanup", json!([true])),
        ("/cache/manage", json!(["clear"])),
        ("/tasks/manage", json!(["cancel"])),
        ("/database/optimize", json!(["analyze"])),
        ("/config", json!([1])),
    ] {
        let method = if path == "/config" {
            Method::PUT
        } else {
            Method::POST
        };
        let (status, error, _) = call(&app, method, path, Some(TOKEN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {error}");
    }
    let (status, error, _) = call(
        &app,
        Method::POST,
        "/cache/manage",
        Some(TOKEN),
        Some(json!({ "action": "clear", "cache_type": "l9" })),
    )
    .await;
    assert_eq!(
        (status, error["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("cache_type")),
        "an object's fields still named: {error}"
    );
}

/// A key ring is shown as `***` and the document still goes back as it is; `revoke` drops
/// shared values written before a moment, or under a key id, and refuses a bad request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_ring_stays_hidden_and_revoke_is_a_cache_action() {
    let mut config = PerformanceConfig::default();
    config.cache.encryption_keys = vec![
        perf_core::config::EncryptionKey::new(
            "new",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        perf_core::config::EncryptionKey::new(
            "old",
            "HxobHBscGxwbHBscGxwbHBscGxwbHBscGxwbHBscGxw=",
        ),
    ];
    let optimizer = Arc::new(
        PerformanceOptimizer::builder()
            .config(config)
            .build()
            .expect("valid"),
    );
    let app = app(Arc::clone(&optimizer));
    let (_, document, _) = call(&app, Method::GET, "/config", None, None).await;
    assert_eq!(document["cache_encryption_keys"], "***");
    assert!(!document.to_string().contains("AAECAwQF"), "{document}");
    let (status, ..) = call(&app, Method::PUT, "/config", Some(TOKEN), Some(document)).await;
    assert_eq!(status, StatusCode::OK);

    let cache = optimizer.cache();
    cache.set("ad", 1u64, Tier::L2, None).await.expect("stored");
    let revoke = async |fields: Value| {
        let mut body = json!({ "action": "revoke" });
        body.as_object_mut()
            .expect("an object")
            .extend(fields.as_object().cloned().unwrap_or_default());
        let (status, answer, _) =
            call(&app, Method::POST, "/cache/manage", Some(TOKEN), Some(body)).await;
        (status, answer)
    };
    for (fields, named) in [
        (json!({}), "written_before"),
        (json!({ "written_before": "yesterday" }), "written_before"),
        (
            json!({ "written_before": "2999-01-01T00:00:00Z" }),
            "future",
        ),
        (json!({ "key_id": "new" }), "key_id"),
        (
            json!({ "key_id": "old", "written_before": "now" }),
            "written_before",
        ),
    ] {
        let (status, answer) = revoke(fields.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields}: {answer}"
        );
        assert!(answer.to_string().contains(named), "{fields}: {answer}");
    }
    let held = cache.get::<u64>("ad", Tier::L2).await.expect("ok");
    assert!(held.is_some(), "refused requests drop nothing");
    // Write times are in milliseconds: "now" must come after the write's.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let answer = revoke(json!({ "written_before": "now" })).await;
    assert_eq!(answer, (StatusCode::OK, json!({ "revoked": true })));
    assert_eq!(cache.get::<u64>("ad", Tier::L2).await.expect("ok"), None);
    let (status, _) = revoke(json!({ "key_id": "old" })).await;
    assert_eq!(status, StatusCode::OK);
}
