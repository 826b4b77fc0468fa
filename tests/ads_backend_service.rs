//! The ads back end example run as a service: its own binary in a process of its own, stopped
//! with a real SIGTERM, configured from a TOML file, logging JSON.
//!
//! `cargo test` builds the examples before it runs any test; the binary is looked up next to
//! this test's. Without it (a `cargo test --test ...` that built no example) the tests skip,
//! having said why, unless `PERF_REQUIRE_EXAMPLES=1` (set by CI).
#![cfg(unix)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

/// The example's binary, or `None` (said why) when it was not built.
fn example_binary() -> Option<PathBuf> {
    let test = std::env::current_exe().expect("this test's path");
    // target/<profile>/deps/<this test> → target/<profile>/examples/ads_backend
    let binary = test.parent()?.parent()?.join("examples/ads_backend");
    if binary.is_file() {
        return Some(binary);
    }
    let reason = format!(
        "{} not built (cargo build --example ads_backend)",
        binary.display()
    );
    assert!(
        std::env::var_os("PERF_REQUIRE_EXAMPLES").is_none_or(|v| v != "1"),
        "PERF_REQUIRE_EXAMPLES=1: {reason}"
    );
    eprintln!("skipped: {reason}");
    None
}

/// A running example, killed if a test fails before it stops.
struct Service {
    child: Child,
    base: String,
    /// Reads stderr (the logs) as it comes, so that the example never blocks on a full pipe.
    logs: Option<std::thread::JoinHandle<String>>,
    /// Each log line as it is written.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Service {
    fn start(binary: &PathBuf, envs: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .env("ADS_ADDR", "127.0.0.1:0")
            .env("ADS_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stderr = child.stderr.take().expect("piped");
        let (line_sender, lines) = tokio::sync::mpsc::unbounded_channel();
        let logs = std::thread::spawn(move || {
            let mut logs = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                logs.push_str(&line);
                logs.push('\n');
                let _ = line_sender.send(line);
            }
            logs
        });
        let stdout = child.stdout.take().expect("piped");
        let Some(base) = listening_on(stdout) else {
            let _ = child.kill();
            let logs = logs.join().unwrap_or_default();
            panic!("the example never said where it listens; its logs:\n{logs}");
        };
        Self {
            child,
            base,
            logs: Some(logs),
            lines,
        }
    }

    /// Waits (at most `limit`) for a log line containing `text`.
    async fn logged(&mut self, text: &str, limit: Duration) {
        let seen = async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(text) {
                    return true;
                }
            }
            false
        };
        let seen = tokio::time::timeout(limit, seen).await;
        assert!(
            matches!(seen, Ok(true)),
            "the example did not log {text:?} within {limit:?}"
        );
    }

    /// Waits for the process to end (at most `limit`), and gives its status and logs.
    fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the example did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let logs = self.logs.take().expect("read once");
        (status, logs.join().expect("stderr read"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://addr` from the example's "ads back end on http://addr" line.
fn listening_on(stdout: ChildStdout) -> Option<String> {
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next()?.ok()?;
    // A thread drains the rest, so that the example never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    line.strip_prefix("ads back end on ").map(str::to_owned)
}

async fn json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(url).send().await.expect("answered");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// A write the database holds up (the injected `slow` fault: each call takes 5 s more) is in
/// flight when SIGTERM arrives: it completes with its answer, then the process exits 0,
/// having logged its stop as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let Some(binary) = example_binary() else {
        return;
    };
    let mut service = Service::start(
        &binary,
        &[
            ("ADS_ADMIN_TOKEN", "switch"),
            ("RUST_LOG", "info,ads_backend=debug"),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    // The ad cached first, so that only the insert meets the stalled database.
    assert_eq!(
        json(&client, format!("{}/ads/7", service.base)).await["id"],
        7
    );
    let switched = client
        .post(format!("{}/admin/db-fault", service.base))
        .bearer_auth("switch")
        .json(&serde_json::json!({ "mode": "slow" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(switched.status(), 200);

    let in_flight = tokio::spawn(
        client
            .post(format!("{}/ads/7/impressions", service.base))
            .json(&serde_json::json!({ "user_id": 1, "day": "2026-12-05" }))
            .send(),
    );
    service
        .logged("held up by the injected fault", Duration::from_secs(10))
        .await;
    service.signal("TERM");

    let response = in_flight.await.expect("joined").expect("answered");
    assert_eq!(response.status(), 200);
    let recorded: Value = response.json().await.expect("the whole body");
    assert_eq!(recorded["recorded"], true);

    let (status, logs) = service.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["fields"]["message"].as_str())
        .collect();
    let stopping = messages.iter().position(|m| m.starts_with("stopping"));
    let stopped = messages.iter().position(|m| *m == "stopped");
    assert!(
        matches!((stopping, stopped), (Some(a), Some(b)) if a < b),
        "{messages:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["signal"] == "SIGTERM"),
        "{logs}"
    );
}

/// `--config FILE` sets perf's settings; a file with a bad field stops the example at start,
/// naming the file and the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_is_read_and_a_bad_one_refused_at_start() {
    let Some(binary) = example_binary() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("perf-ads-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let good = dir.join("good.toml");
    std::fs::write(&good, "slow_query_threshold = \"250ms\"\ncache_ttl = 42\n").expect("written");
    let service = Service::start(&binary, &[], &["--config", good.to_str().expect("UTF-8")]);
    let config = json(
        &reqwest::Client::new(),
        format!("{}/performance/config", service.base),
    )
    .await;
    assert_eq!(config["slow_query_threshold"], "250ms");
    assert_eq!(config["cache_ttl"], "42s");
    service.signal("TERM");
    let (status, _) = service.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "cache_ttl = \"soon\"\n").expect("written");
    let output = Command::new(&binary)
        .env("ADS_ADDR", "127.0.0.1:0")
        .env("PERF_CONFIG", &bad)
        .output()
        .expect("the example runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success(), "started with a bad config");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("cache_ttl"),
        "{stderr}"
    );
}
