//! Rate limits per caller: by token name with a valid token, by client address otherwise,
//! the address read from `X-Forwarded-For` only when a trusted proxy sends it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
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

/// Two requests a minute, a token, and the proxies of 10.0.0.0/8 trusted.
fn app() -> Router {
    let mut admin = AdminConfig::default();
    admin.tokens = BTreeMap::from([("ops".to_string(), Secret::new(TOKEN))]);
    admin.rate_limit_per_minute = 2;
    admin.trusted_proxies = vec!["10.0.0.0/8".parse().expect("a network")];
    let optimizer = Arc::new(PerformanceOptimizer::builder().build().expect("valid"));
    perf_http::router_for(optimizer, admin).expect("valid admin settings")
}

/// `GET /cache/stats` from `peer`, naming `forwarded_for` and presenting `token` if given.
async fn get(
    app: &Router,
    peer: &str,
    forwarded_for: Option<&str>,
    token: Option<&str>,
) -> StatusCode {
    let mut request = Request::builder().method(Method::GET).uri("/cache/stats");
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut request = request.body(Body::empty()).expect("request");
    let peer: IpAddr = peer.parse().expect("an address");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
    app.clone()
        .oneshot(request)
        .await
        .expect("answered")
        .status()
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_have_a_bucket_each() {
    let app = app();
    let proxy = "10.0.0.2";
    for _ in 0..2 {
        assert_eq!(
            get(&app, proxy, Some("198.51.100.1"), None).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(&app, proxy, Some("198.51.100.1"), None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(&app, proxy, Some("198.51.100.2"), None).await,
        StatusCode::OK,
        "another client through the same proxy"
    );
    assert_eq!(
        get(&app, proxy, Some("198.51.100.1, 10.0.0.9"), None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "through two proxies: still the first client"
    );
    assert_eq!(
        get(&app, proxy, Some("198.51.100.3, 198.51.100.1"), None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "what the client wrote to the left of its own address is not believed"
    );
    assert_eq!(
        get(&app, proxy, None, None).await,
        StatusCode::OK,
        "the proxy's own requests count against the proxy"
    );
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    let app = app();
    let peer = "203.0.113.5";
    assert_eq!(
        get(&app, peer, Some("198.51.100.1"), None).await,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, peer, Some("198.51.100.2"), None).await,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, peer, Some("198.51.100.3"), None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a new address each time is still the peer"
    );
}

#[tokio::test]
async fn an_authenticated_caller_is_not_starved_by_others_at_its_address() {
    let app = app();
    let shared = "192.0.2.20";
    for _ in 0..2 {
        assert_eq!(get(&app, shared, None, None).await, StatusCode::OK);
    }
    assert_eq!(
        get(&app, shared, None, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(&app, shared, None, Some(TOKEN)).await,
        StatusCode::OK,
        "the token's own allowance"
    );
    assert_eq!(
        get(&app, "192.0.2.21", None, Some(TOKEN)).await,
        StatusCode::OK,
        "the second request of the token's minute, from anywhere"
    );
    assert_eq!(
        get(&app, "192.0.2.22", None, Some(TOKEN)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a token's allowance is one, wherever it is used from"
    );
}

#[tokio::test]
async fn guessing_tokens_is_limited_by_address() {
    let app = app();
    let guesser = "192.0.2.30";
    for guess in ["guess-one-0123456789", "guess-two-0123456789"] {
        assert_eq!(
            get(&app, guesser, None, Some(guess)).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        get(&app, guesser, None, Some("guess-three-01234567")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(&app, guesser, None, Some(TOKEN)).await,
        StatusCode::OK,
        "the valid token is not held back by the guesses"
    );
}
