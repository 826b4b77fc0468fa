//! Every refusal (401, 403, 413, 429) is logged at warn with the client's address and the
//! route, never the token; a router with mutation routes and no token warns at start.

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request, StatusCode, header},
};
use perf_core::PerformanceOptimizer;
use perf_http::{AdminConfig, Secret};
use tower::ServiceExt;

const TOKEN: &str = "ops-token-0123456789";
const WRONG: &str = "wrong-token-0123456789";

/// The log lines written, in a buffer tests read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("not poisoned");
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish()
    }
}

/// The process's subscriber: the tests run on several threads, and tell their lines apart
/// by client address.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        tracing::subscriber::set_global_default(logs.subscriber()).expect("the only subscriber");
        logs
    })
}

fn admin() -> AdminConfig {
    let mut admin = AdminConfig::default();
    admin.tokens = BTreeMap::from([("ops".to_string(), Secret::new(TOKEN))]);
    admin.body_limit_bytes = 1024;
    admin.rate_limit_per_minute = 3;
    admin
}

fn optimizer() -> Arc<PerformanceOptimizer> {
    Arc::new(PerformanceOptimizer::builder().build().expect("valid"))
}

async fn send(
    app: &Router,
    client: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut request = request.body(Body::from(body.to_owned())).expect("request");
    let client: SocketAddr = client.parse().expect("an address");
    request.extensions_mut().insert(ConnectInfo(client));
    app.clone()
        .oneshot(request)
        .await
        .expect("answered")
        .status()
}

#[tokio::test]
async fn every_refusal_is_logged_with_client_and_route_never_the_token() {
    let logs = logs();
    let app: Router = Router::new().nest(
        "/performance",
        perf_http::router_for(optimizer(), admin()).expect("valid"),
    );
    let client = "192.0.2.77:50000";
    let cancel = r#"{"action": "cancel"}"#;
    let manage = "/performance/tasks/manage";
    let large = format!(
        r#"{{"action": "invalidate", "key": "{}"}}"#,
        "k".repeat(2000)
    );
    let refusals = [
        (None, manage, cancel, StatusCode::UNAUTHORIZED),
        (Some(WRONG), manage, cancel, StatusCode::FORBIDDEN),
        (
            Some(TOKEN),
            "/performance/cache/manage",
            large.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // The address's third request of the minute, then its fourth.
        (None, "/performance/cache/stats", "", StatusCode::OK),
        (
            None,
            "/performance/cache/stats",
            "",
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ];
    for (token, path, body, expected) in refusals {
        let method = if body.is_empty() {
            Method::GET
        } else {
            Method::POST
        };
        let status = send(&app, client, method, path, token, body).await;
        assert_eq!(status, expected, "{path}");
    }

    let lines: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|line| line.contains("192.0.2.77") && line.contains("admin API request refused"))
        .collect();
    let text = lines.join("\n");
    for (status, route) in [
        ("401", "POST"),
        ("403", "POST"),
        ("413", "POST"),
        ("429", "GET"),
    ] {
        let line = lines
            .iter()
            .find(|line| line.contains(&format!("status={status}")))
            .unwrap_or_else(|| panic!("no {status} logged:\n{text}"));
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(&format!("method={route}")), "{line}");
        assert!(
            line.contains("route=\"/performance/"),
            "the path as the client sent it: {line}"
        );
    }
    assert_eq!(lines.len(), 4, "one line each:\n{text}");
    let all = logs.lines().join("\n");
    assert!(!all.contains(TOKEN), "the token is never logged:\n{all}");
    assert!(!all.contains(WRONG), "nor a wrong one:\n{all}");
    assert!(
        text.contains("token=\"ops\""),
        "the 413 names the token's name:\n{text}"
    );
}

#[tokio::test]
async fn a_refusal_without_connection_info_is_logged_too() {
    let logs = logs();
    let app = perf_http::router_for::<()>(optimizer(), admin()).expect("valid");
    let request = Request::post("/memory/cleanup")
        .header(header::AUTHORIZATION, "Bearer not-the-token-0123456789")
        .body(Body::empty())
        .expect("request");
    let status = app.oneshot(request).await.expect("answered").status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        logs.lines().iter().any(|line| line.contains("status=403")
            && line.contains("client=\"unknown\"")
            && line.contains("route=\"/memory/cleanup\"")),
        "{:?}",
        logs.lines()
    );
}

/// Built with no token, the mutation routes are mounted but refuse everything: said at start.
#[test]
fn no_token_configured_is_a_warning_at_start() {
    let local = Logs::default();
    tracing::subscriber::with_default(local.subscriber(), || {
        drop(perf_http::router_for::<()>(optimizer(), admin()).expect("valid"));
    });
    assert!(
        local.lines().is_empty(),
        "with a token, nothing: {:?}",
        local.lines()
    );
    tracing::subscriber::with_default(local.subscriber(), || {
        drop(perf_http::router_for::<()>(optimizer(), AdminConfig::default()).expect("valid"));
    });
    let lines = local.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains(" WARN ") && line.contains("no admin token is configured")),
        "{lines:?}"
    );
}
