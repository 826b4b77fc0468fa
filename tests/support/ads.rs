//! The ads back end started in-process on a free port, and the walk through its endpoints
//! that the SQLite and the PostgreSQL tests share.

use serde_json::{Value, json};

use crate::app;

/// Builds the example with `options` and serves it on a free port: its base URL.
pub(crate) async fn serve(options: &app::Options) -> (String, &'static perf::PerformanceOptimizer) {
    let (router, optimizer) = app::build(options).await.expect("built");
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
    (base, optimizer)
}

/// Every endpoint, with the seed's data (`ads: 500, users: 100, impressions: 5_000`): cached reads, analytics
/// invalidated by a write, a batch, the admin API, the fault switch (token
/// `fault-switch-token-for-tests`) and `/metrics`.
pub(crate) async fn walk_every_endpoint(base: &str) {
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let request = client.get(format!("{base}{path}"));
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let post = |path: &str, body: Value| {
        let request = client.post(format!("{base}{path}")).json(&body);
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    for _ in 0..5 {
        let (status, ad) = get("/ads/42").await;
        assert_eq!((status, ad["id"].clone()), (200, json!(42)));
    }
    let (_, ad) = get("/ads/42").await;
    assert_eq!(
        ad,
        json!({ "id": 42, "campaign": 42, "category": "tech", "title": "Ad 42: tech deals", "bid": 1.3 }),
        "the seed's row, typed as written"
    );
    let (status, _) = get("/ads/999999").await;
    assert_eq!(status, 404);
    let (status, preferences) = get("/users/5/preferences").await;
    assert_eq!(
        (status, preferences.as_array().map(Vec::len)),
        (200, Some(3))
    );
    let (status, templates) = get("/ad-templates").await;
    assert_eq!((status, templates.as_array().map(Vec::len)), (200, Some(3)));
    let (status, config) = get("/config/global").await;
    assert_eq!(
        (status, config["max_ads_per_page"].clone()),
        (200, json!(4))
    );

    let (_, stats) = get("/performance/cache/stats").await;
    assert!(
        stats["l1"]["hits"].as_u64().is_some_and(|hits| hits >= 4),
        "{stats}"
    );

    // User 5's day: 5 of the seed's 5,000 impressions (100 users, 10 days), ad 1 not among
    // them.
    let (status, before) = get("/analytics/5/2026-11-28").await;
    assert_eq!(
        (status, before["impressions"].clone()),
        (200, json!(5)),
        "{before}"
    );
    let per_ad = |analytics: &Value, field: &str| -> f64 {
        analytics["ads"]
            .as_array()
            .expect("per ad")
            .iter()
            .map(|ad| ad[field].as_f64().expect("a number"))
            .sum()
    };
    for field in ["impressions", "clicks", "spend"] {
        let total = before[field].as_f64().expect("a total");
        assert!(
            (per_ad(&before, field) - total).abs() < 1e-9,
            "{field}: {before}"
        );
    }
    let (_, cached) = get("/analytics/5/2026-11-28").await;
    assert_eq!(cached, before, "served from the query cache");
    let (status, written) = post(
        "/ads/1/impressions",
        json!({ "user_id": 5, "day": "2026-11-28", "clicked": true }),
    )
    .await;
    assert_eq!((status, written), (200, json!({ "recorded": true })));
    let (_, after) = get("/analytics/5/2026-11-28").await;
    assert_eq!(
        after["impressions"], 6,
        "the write invalidated the cached analytics"
    );
    assert_eq!(
        after["clicks"].as_i64(),
        before["clicks"].as_i64().map(|c| c + 1)
    );
    // Ad 1 bids 0.6 per thousand.
    let ad_1 = after["ads"]
        .as_array()
        .and_then(|ads| ads.iter().find(|ad| ad["ad_id"] == 1))
        .expect("ad 1 in the day's ads");
    assert_eq!(
        (ad_1["impressions"].clone(), ad_1["clicks"].clone()),
        (json!(1), json!(1))
    );
    assert!(
        (ad_1["spend"].as_f64().expect("spend") - 0.0006).abs() < 1e-12,
        "{ad_1}"
    );

    let (status, scored) = post("/batch/process", json!({ "ad_ids": [1, 2, 999999] })).await;
    assert_eq!(status, 200);
    let outcomes: Vec<_> = scored
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(outcomes, ["completed", "completed", "failed"]);

    let (status, _) = get("/performance/stats").await;
    assert_eq!(status, 200);
    let (_, database) = get("/performance/database/stats").await;
    assert!(
        database["shapes"].as_u64().is_some_and(|n| n >= 2),
        "{database}"
    );
    // The database fault switch: admin-protected; with the database failing, warm reads are
    // still served and cold ones fail.
    let switch = |token: &'static str, mode: &'static str| {
        let request = client
            .post(format!("{base}/admin/db-fault"))
            .bearer_auth(token)
            .json(&json!({ "mode": mode }));
        async move { request.send().await.expect("answered").status().as_u16() }
    };
    assert_eq!(switch("wrong-token", "fail").await, 401);
    assert_eq!(switch("fault-switch-token-for-tests", "melt").await, 400);
    assert_eq!(switch("fault-switch-token-for-tests", "fail").await, 200);
    let (status, ad) = get("/ads/42").await;
    assert_eq!(
        (status, ad["id"].clone()),
        (200, json!(42)),
        "warm: from the cache"
    );
    let (status, _) = get("/ads/43").await;
    assert_eq!(status, 500, "cold, and the database fails");
    assert_eq!(switch("fault-switch-token-for-tests", "none").await, 200);
    let (status, _) = get("/ads/43").await;
    assert_eq!(status, 200, "the database is back");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"operation="ads.get_ad""#),
        "monitored handlers are exported"
    );
}
