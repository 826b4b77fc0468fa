//! Alerts evaluated by the background loops: they fire, stay firing, change severity and
//! resolve, over a window that leaves old traffic out; `performance_alerts_active` read back
//! from the Prometheus text; the webhook receiving the transitions on a real server.
//!
//! Each test owns its alert kinds: the recorder is process-wide.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusHandle;
use perf::{
    PerformanceConfig, PerformanceOptimizer, Tier,
    alerts::{self, AlertKind, AlertStatus, Severity},
    config::Secret,
    memory::{LimitSource, MemoryUsage, UsageSource},
};
use serde_json::Value;

/// Memory at the share of its 1 GiB limit the test sets, in thousandths.
struct Dial(Arc<AtomicU64>);

impl UsageSource for Dial {
    fn sample(&self) -> std::io::Result<MemoryUsage> {
        let fraction = self.0.load(Ordering::Relaxed) as f64 / 1000.0;
        Ok(MemoryUsage {
            rss_bytes: (fraction * f64::from(1u32 << 30)) as u64,
            virtual_bytes: 2 << 30,
            allocator: None,
            tracked: None,
            system_total_bytes: 8 << 30,
            system_available_bytes: 4 << 30,
            limit_bytes: 1 << 30,
            limit_source: LimitSource::Configured,
            usage_fraction: fraction,
        })
    }
}

/// `performance_alerts_active{alert, severity}` in the Prometheus text, if exported.
fn active(prometheus: &PrometheusHandle, alert: &str, severity: &str) -> Option<f64> {
    let text = prometheus.render();
    text.lines()
        .find(|line| {
            line.starts_with("performance_alerts_active{")
                && line.contains(&format!("alert=\"{alert}\""))
                && line.contains(&format!("severity=\"{severity}\""))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

fn firing(optimizer: &PerformanceOptimizer, kind: AlertKind) -> Option<(Severity, f64)> {
    optimizer
        .alert_state()
        .firing
        .iter()
        .find(|active| active.alert.kind == kind)
        .map(|active| (active.alert.severity, active.alert.observed))
}

/// A 60 s window is evaluated every 6 s: each step waits one evaluation and a second.
const STEP: Duration = Duration::from_secs(7);

#[tokio::test(start_paused = true)]
async fn alerts_fire_stay_and_resolve_in_the_background() {
    let prometheus = perf_http::install_prometheus().expect("the test's recorder");
    let memory = Arc::new(AtomicU64::new(500));
    let mut config = PerformanceConfig::default();
    config.alerts.window = Duration::from_secs(60);
    config.alerts.cache_min_lookups = 100;
    let optimizer = PerformanceOptimizer::builder()
        .config(config.clone())
        .memory_source(Dial(Arc::clone(&memory)))
        .build()
        .expect("valid");
    let background = optimizer.start().expect("started");

    tokio::time::sleep(STEP).await;
    let evaluated = optimizer.alert_state().evaluated_at.expect("evaluated");
    assert_eq!(firing(&optimizer, AlertKind::MemoryUsage), None);

    // Fires, as a warning.
    memory.store(850, Ordering::Relaxed);
    tokio::time::sleep(STEP).await;
    assert_eq!(
        firing(&optimizer, AlertKind::MemoryUsage),
        Some((Severity::Warning, 0.85))
    );
    assert_eq!(active(&prometheus, "memory_usage", "warning"), Some(1.0));
    let state = optimizer.alert_state();
    assert!(state.evaluated_at > Some(evaluated), "evaluated again");
    let since = state.firing[0].since;

    // Stays firing: the same start, two evaluations later.
    tokio::time::sleep(STEP * 2).await;
    assert_eq!(optimizer.alert_state().firing[0].since, since);
    assert_eq!(active(&prometheus, "memory_usage", "warning"), Some(1.0));

    // Turns critical: the warning resolves, the critical fires.
    memory.store(950, Ordering::Relaxed);
    tokio::time::sleep(STEP).await;
    assert_eq!(
        firing(&optimizer, AlertKind::MemoryUsage),
        Some((Severity::Critical, 0.95))
    );
    assert_eq!(active(&prometheus, "memory_usage", "warning"), Some(0.0));
    assert_eq!(active(&prometheus, "memory_usage", "critical"), Some(1.0));

    // Resolves.
    memory.store(300, Ordering::Relaxed);
    tokio::time::sleep(STEP).await;
    assert_eq!(firing(&optimizer, AlertKind::MemoryUsage), None);
    assert_eq!(active(&prometheus, "memory_usage", "critical"), Some(0.0));

    // A cold start: 2000 misses. The hit rate alert fires.
    let cache = optimizer.cache();
    for key in 0..2000 {
        let missed = cache.get_l1_local::<u32>(&format!("cold:{key}"));
        assert!(matches!(missed, Ok(None)));
    }
    cache
        .set_local("warm", 7u32, Tier::L1, None)
        .expect("stored");
    tokio::time::sleep(STEP).await;
    assert_eq!(
        firing(&optimizer, AlertKind::CacheHitRate),
        Some((Severity::Critical, 0.0))
    );
    assert_eq!(active(&prometheus, "cache_hit_rate", "critical"), Some(1.0));

    // Then warm: 100 hits a step. Since start, the hit rate stays low (1100 of 3100); over
    // the window, once the cold minute has left it, it is all hits and the alert resolves.
    for _ in 0..11 {
        for _ in 0..100 {
            assert!(matches!(cache.get_l1_local::<u32>("warm"), Ok(Some(_))));
        }
        tokio::time::sleep(STEP).await;
    }
    assert_eq!(firing(&optimizer, AlertKind::CacheHitRate), None);
    assert_eq!(active(&prometheus, "cache_hit_rate", "critical"), Some(0.0));
    let since_start = alerts::alerts(&optimizer.snapshot(), &config);
    assert!(
        since_start
            .iter()
            .any(|alert| alert.kind == AlertKind::CacheHitRate),
        "the totals since start would still fire: {since_start:#?}"
    );
    background.stop().await;
}

/// The transitions reach a real HTTP server in Alertmanager's form: firing, then resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receives_fired_and_resolved_alerts() {
    use axum::{Router, extract::State, routing::post};
    use tokio::sync::mpsc;

    let (bodies, mut received) = mpsc::unbounded_channel::<String>();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(
                |State(bodies): State<mpsc::UnboundedSender<String>>, body: String| async move {
                    let _ = bodies.send(body);
                },
            ),
        )
        .with_state(bodies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = PerformanceConfig::default();
    config.alerts.webhook_url = Some(Secret::new(format!("http://{address}/api/v2/alerts")));
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid");
    let background = optimizer.start().expect("started");
    // The next batch about this test's alert: the machine's own may come and go.
    let mut next = async || -> Vec<Value> {
        loop {
            let body = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await
                .expect("a POST within 30 s")
                .expect("the server runs");
            let alerts: Value = serde_json::from_str(&body).expect("JSON");
            let ours: Vec<Value> = alerts
                .as_array()
                .expect("an array")
                .iter()
                .filter(|alert| alert["labels"]["alertname"] == "task_failure_rate")
                .cloned()
                .collect();
            if !ours.is_empty() {
                return ours;
            }
        }
    };

    // 60% of the tasks fail: the task alert fires, critical (past 55%).
    let tasks = optimizer.tasks();
    let run = async |fail: usize, succeed: usize| {
        let jobs = (0..fail + succeed)
            .map(move |i| async move { if i < fail { Err("db down") } else { Ok(i) } });
        let handles = tasks.batch_submit(jobs).await.expect("accepted");
        tasks.wait_for_tasks(handles, None).await;
    };
    run(12, 8).await;
    let fired = optimizer.evaluate_alerts();
    assert!(
        fired
            .iter()
            .any(|t| t.alert.kind == AlertKind::TaskFailureRate
                && t.status == AlertStatus::Firing
                && t.alert.severity == Severity::Critical),
        "{fired:#?}"
    );
    let sent = next().await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["labels"]["severity"], "critical");
    assert_eq!(sent[0]["annotations"]["status"], "firing");
    assert!(
        sent[0]["startsAt"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert!(sent[0].get("endsAt").is_none());

    // Enough successes to bring the rate under 10%: it resolves.
    run(0, 200).await;
    optimizer.evaluate_alerts();
    let sent = next().await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["annotations"]["status"], "resolved");
    assert!(sent[0]["endsAt"].as_str().is_some());
    // Counted once the server's answer is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while optimizer.alert_state().webhook.sent < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both batches counted as sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(optimizer.alert_state().webhook.failed, 0);
    background.stop().await;
}
