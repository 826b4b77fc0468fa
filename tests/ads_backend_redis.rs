//! The ads back end example over a real Redis that dies: a committed write is reported as one,
//! and the analytics it changed are not served from before it.

#![allow(dead_code)]

#[path = "../examples/ads_backend/app.rs"]
mod app;
#[path = "../examples/ads_backend/db.rs"]
mod db;
#[path = "../perf-redis/tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use support::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impressions_recorded_while_redis_is_down_are_200_and_invalidate_the_analytics() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let options = app::Options {
        addr: "127.0.0.1:0".parse().expect("address"),
        redis_url: Some(server.url()),
        cache_enabled: true,
        seed: db::Seed {
            ads: 50,
            users: 20,
            impressions: 1_000,
        },
        db_fault: app::DbFault::None,
        admin_token: None,
        config: None,
        database_url: None,
    };
    let (router, _optimizer) = app::build(&options).await.expect("built");
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .expect("bound");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let client = reqwest::Client::new();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let analytics = || send(client.get(format!("{base}/analytics/5/2026-11-28")));
    let impression = || {
        send(
            client
                .post(format!("{base}/ads/1/impressions"))
                .json(&json!({ "user_id": 5, "day": "2026-11-28" })),
        )
    };

    let (status, before) = analytics().await;
    assert_eq!(status, 200);
    let before = before["impressions"].as_u64().expect("a count");
    assert_eq!(analytics().await.1["impressions"], before, "cached");

    server.kill();
    for written in 1..=20 {
        let (status, body) = impression().await;
        assert_eq!(
            (status, body),
            (200, json!({ "recorded": true })),
            "impression {written} during the outage"
        );
    }
    let (status, after) = analytics().await;
    assert_eq!(status, 200);
    assert_eq!(
        after["impressions"].as_u64(),
        Some(before + 20),
        "the cached analytics from before the writes are not served"
    );
}
