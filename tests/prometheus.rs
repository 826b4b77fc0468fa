//! A real Prometheus scrapes the ads back end under load, and every panel of
//! `dashboards/grafana.json` gets data from it.
//!
//! Needs the `prometheus` and `redis-server` binaries (Debian packages `prometheus` and
//! `redis-server`): without one the test says so and skips, unless `PERF_REQUIRE_PROMETHEUS=1`
//! or `PERF_REQUIRE_REDIS=1` (set by `.ci/run`) makes the missing binary a failure. Redis is
//! needed because the dashboard charts the Redis tier's breaker and errors.

#![allow(dead_code)]

#[path = "../examples/ads_backend/app.rs"]
mod app;
#[path = "../examples/ads_backend/db.rs"]
mod db;
#[path = "../perf-redis/tests/support/mod.rs"]
mod support;

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use support::RedisServer;
use tokio::time::Instant;

/// How often Prometheus scrapes and evaluates: short, so that `rate()` has two samples soon.
const SCRAPE_INTERVAL: &str = "1s";
/// What Grafana's interval variables become: many scrapes wide, and longer than the test runs.
const RATE_INTERVAL: &str = "30s";
/// How long the dashboard may take to have data everywhere (the machine's resources are first
/// sampled 15 s after start).
const DEADLINE: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "prometheus-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_in_a_real_prometheus() {
    if !support::installed_unless_required("prometheus", "prometheus", "PERF_REQUIRE_PROMETHEUS") {
        return;
    }
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (backend, optimizer) = start_backend(&redis).await;
    let prometheus = PrometheusServer::start(backend.addr).await;
    let panels = dashboard_queries();

    backend.one_off_events(&mut redis, optimizer).await;
    let load = tokio::spawn(backend.clone().steady_load());
    let _stop_load = AbortOnDrop(load);

    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut missing = Vec::new();
        for panel in &panels {
            if let Err(why) = prometheus.has_data(&panel.expr).await {
                missing.push(format!("- {:?}: {} ({why})", panel.title, panel.expr));
            }
        }
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} of {} dashboard queries have no data after {DEADLINE:?}:\n{}\n{}",
                missing.len(),
                panels.len(),
                missing.join("\n"),
                prometheus.scrape_health().await,
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One PromQL expression of the dashboard, with the title of its panel.
struct PanelQuery {
    title: String,
    expr: String,
}

/// Every `targets[].expr` of `dashboards/grafana.json`, rows' nested panels included, with
/// Grafana's variables replaced by values Prometheus accepts.
fn dashboard_queries() -> Vec<PanelQuery> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/grafana.json"
    ))
    .expect("dashboards/grafana.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let variables = variables(&dashboard);
    let mut queries = Vec::new();
    collect_queries(&dashboard["panels"], &variables, &mut queries);
    assert!(!queries.is_empty(), "the dashboard has no queries");
    queries
}

fn collect_queries(panels: &Value, variables: &[(String, String)], into: &mut Vec<PanelQuery>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) {
                into.push(PanelQuery {
                    title: title.to_owned(),
                    expr: substitute(expr, variables),
                });
            }
        }
        // A collapsed row holds its panels.
        collect_queries(&panel["panels"], variables, into);
    }
}

/// Grafana's variables and what each becomes: the interval ones a range of [`RATE_INTERVAL`];
/// a template variable its current value, or `.*` (any) when it has none or is "All".
fn variables(dashboard: &Value) -> Vec<(String, String)> {
    let mut variables: Vec<(String, String)> = ["__rate_interval", "__interval", "__range"]
        .into_iter()
        .map(|name| (name.to_owned(), RATE_INTERVAL.to_owned()))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        let current = &variable["current"]["value"];
        let value = current
            .as_str()
            .or_else(|| current[0].as_str())
            .filter(|value| !value.is_empty() && *value != "$__all")
            .unwrap_or(".*");
        variables.push((name.to_owned(), value.to_owned()));
    }
    // Longest first, so that `$__rate_interval` is not taken for `$__rate` and a suffix.
    variables.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    variables
}

/// `expr` with `${name}`, `${name:format}`, `[[name]]` and `$name` replaced.
fn substitute(expr: &str, variables: &[(String, String)]) -> String {
    let mut expr = expr.to_owned();
    for (name, value) in variables {
        expr = expr
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value);
        while let Some(start) = expr.find(&format!("${{{name}:")) {
            let Some(end) = expr[start..].find('}') else {
                break;
            };
            expr.replace_range(start..start + end + 1, value);
        }
        expr = expr.replace(&format!("${name}"), value);
    }
    expr
}

/// The ads back end, served in this process on a free loopback port, with the Redis tier.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    client: reqwest::Client,
}

async fn start_backend(redis: &RedisServer) -> (Backend, &'static perf::PerformanceOptimizer) {
    let options = app::Options {
        addr: "127.0.0.1:0".parse().expect("address"),
        redis_url: Some(redis.url()),
        cache_enabled: true,
        seed: db::Seed {
            ads: 500,
            users: 100,
            impressions: 5_000,
        },
        db_fault: app::DbFault::None,
        admin_token: Some(ADMIN_TOKEN.into()),
        config: None,
        database_url: None,
    };
    let (router, optimizer) = app::build(&options).await.expect("built");
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    (Backend { addr, client }, optimizer)
}

impl Backend {
    /// The answer's status; `None` when there was none (the steady load carries on).
    async fn get(&self, path: &str) -> Option<u16> {
        let request = self.client.get(format!("http://{}{path}", self.addr));
        Some(request.send().await.ok()?.status().as_u16())
    }

    async fn post(&self, path: &str, body: Value) -> Option<u16> {
        let request = self.client.post(format!("http://{}{path}", self.addr));
        let response = request.bearer_auth(ADMIN_TOKEN).json(&body).send().await;
        Some(response.ok()?.status().as_u16())
    }

    /// What happens rarely but is charted: failed loads while the database fails, a forced
    /// memory cleanup, and a Redis outage (errors, the breaker opening), after which Redis is
    /// back.
    async fn one_off_events(
        &self,
        redis: &mut RedisServer,
        optimizer: &perf::PerformanceOptimizer,
    ) {
        let fault = |mode: &str| self.post("/admin/db-fault", json!({ "mode": mode }));
        assert_eq!(self.get("/ads/1").await, Some(200));
        assert_eq!(fault("fail").await, Some(200));
        let cold = self.get("/ads/2").await;
        assert_eq!(cold, Some(500), "a cold read while the database fails");
        let cold = self.get("/analytics/2/2026-11-28").await;
        assert_eq!(cold, Some(500), "a cold query while the database fails");
        assert_eq!(fault("none").await, Some(200));

        // What `POST /performance/memory/cleanup {"force": true}` does.
        optimizer
            .memory()
            .cleanup_memory_async(true)
            .await
            .expect("a forced cleanup runs");

        redis.kill();
        for user in 1..=10 {
            let answer = self.get(&format!("/analytics/{user}/2026-11-29")).await;
            assert_eq!(answer, Some(200), "Redis down, the database answers");
        }
        redis.restart();
    }

    /// Rounds of reads that hit and miss every tier and the query cache, writes and batches
    /// of tasks, so that every rate has something to show; until aborted.
    async fn steady_load(self) {
        for round in 0u64.. {
            let fresh = 100 + round % 400; // one ad not read before, then hits
            for id in [1, 3, 4, fresh, fresh] {
                let _ = self.get(&format!("/ads/{id}")).await;
            }
            let user = 1 + round % 100;
            for _ in 0..2 {
                let _ = self.get(&format!("/analytics/{user}/2026-11-28")).await;
            }
            let _ = self.get(&format!("/users/{user}/preferences")).await;
            let _ = self.get("/ad-templates").await;
            let _ = self.get("/config/global").await;
            let impression = json!({ "user_id": user, "day": "2026-11-28" });
            let _ = self.post("/ads/1/impressions", impression).await;
            let batch = json!({ "ad_ids": [1, 2, fresh, 999_999] });
            let _ = self.post("/batch/process", batch).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Aborts the task when the test ends, passed or not.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A `prometheus` server on a free loopback port, scraping one target, with its storage in a
/// temporary directory. Killed, and the directory removed, on drop.
struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    base: String,
    client: reqwest::Client,
}

impl PrometheusServer {
    async fn start(target: SocketAddr) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free loopback port");
        let dir =
            std::env::temp_dir().join(format!("perf-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
             scrape_configs:\n  - job_name: ads_backend\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("the configuration written");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("a log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut server = Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client"),
        };
        server.wait_ready().await;
        server
    }

    /// Until `/-/ready` answers 200; fails with Prometheus's log if it exits or takes 30 s.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .client
                .get(format!("{}/-/ready", self.base))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Ok` when the instant query `expr` succeeds with at least one sample that is a number
    /// (a panel of NaN draws nothing); else what came back.
    async fn has_data(&self, expr: &str) -> Result<(), String> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|error| format!("no answer: {error}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|error| format!("not JSON: {error}"))?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        let data = &body["data"];
        let values: Vec<&Value> = match data["resultType"].as_str() {
            Some("scalar") => vec![&data["result"][1]],
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| &s["value"][1])
                .collect(),
            Some("matrix") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["values"].as_array().into_iter().flatten())
                .map(|v| &v[1])
                .collect(),
            _ => return Err(format!("unexpected answer {data}")),
        };
        let numbers = values
            .iter()
            .filter_map(|value| value.as_str()?.parse::<f64>().ok())
            .filter(|value| !value.is_nan())
            .count();
        match (values.len(), numbers) {
            (0, _) => Err("empty result".into()),
            (_, 0) => Err(format!("{} series, all NaN", values.len())),
            _ => Ok(()),
        }
    }

    /// The scrape target's health and last error, for a failure message.
    async fn scrape_health(&self) -> String {
        let targets: Value = match self
            .client
            .get(format!("{}/api/v1/targets", self.base))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(error) => return format!("targets not read: {error}"),
        };
        let mut health = String::from("scrape targets:");
        for target in targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let _ = write!(
                health,
                " {} {} (last error: {:?})",
                target["scrapeUrl"], target["health"], target["lastError"]
            );
        }
        health
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn grafana_variables_become_promql() {
    let dashboard = json!({ "templating": { "list": [
        { "name": "datasource", "type": "datasource", "query": "prometheus" },
        { "name": "operation", "type": "query", "current": { "value": ["ads.get_ad"] } },
        { "name": "tier", "type": "custom", "current": { "value": "$__all" } },
    ] } });
    let variables = variables(&dashboard);
    assert_eq!(
        substitute(
            r#"rate(x{operation="$operation",tier=~"${tier}"}[$__rate_interval]) + rate(y[${__interval}])"#,
            &variables
        ),
        r#"rate(x{operation="ads.get_ad",tier=~".*"}[30s]) + rate(y[30s])"#
    );
    assert_eq!(
        substitute("z{a=~\"${tier:regex}\"}", &variables),
        "z{a=~\".*\"}"
    );
}
