//! Two OS processes share one Redis: writes and invalidations on one reach the other, and
//! after Redis is killed (SIGKILL) and restarted both converge and the tier recovers.
//!
//! The processes are this test binary run again with `worker` as the filter; a worker reads
//! commands on stdin and answers each with one line starting with `@@ `.

#![allow(clippy::print_stdout)] // a test says what it measured

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use perf_core::{Error, MultiLevelCache, PerformanceConfig, RemoteTier, Tier};
use perf_redis::RedisTier;
use support::RedisServer;

/// Set in a worker's environment: the Redis URL it serves.
const WORKER_URL: &str = "PERF_TEST_WORKER_REDIS_URL";

#[test]
#[ignore = "the process that two_processes_share_one_redis_through_a_kill_and_a_restart spawns"]
fn worker() {
    let Ok(url) = std::env::var(WORKER_URL) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (tier, cache) = runtime.block_on(async {
        let tier = RedisTier::builder(url)
            .namespace("procs")
            .op_timeout(Duration::from_millis(100))
            .circuit_breaker(1, Duration::from_millis(200))
            .build()
            .await
            .expect("tier builds");
        let cache = MultiLevelCache::builder(&PerformanceConfig::default())
            .remote_tier(Arc::clone(&tier) as Arc<dyn RemoteTier>)
            .build()
            .expect("valid config");
        (tier, cache)
    });
    println!("@@ ready");
    for line in std::io::stdin().lines() {
        let line = line.expect("stdin");
        let reply = runtime.block_on(answer(&tier, &cache, &line));
        println!("@@ {reply}");
    }
}

async fn answer(tier: &RedisTier, cache: &MultiLevelCache, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let shown = |value: Option<Arc<u32>>| value.map_or("none".to_owned(), |v| v.to_string());
    match words.as_slice() {
        ["set", key, value] => {
            let value: u32 = value.parse().expect("a number");
            match cache.set(key, value, Tier::Redis, None).await {
                Ok(()) => "ok".into(),
                Err(Error::RemoteQueued(_)) => "queued".into(),
                Err(error) => format!("error {error}"),
            }
        }
        ["get", key] => shown(cache.get(key, Tier::Redis).await.expect("valid key")),
        ["local", key] => shown(cache.get(key, Tier::L2).await.expect("valid key")),
        ["delete", key] => match cache.delete(key).await {
            Ok(_) => "ok".into(),
            Err(error) => format!("error {error}"),
        },
        ["stats"] => {
            let stats = tier.stats();
            format!(
                "available={} subscribed={} pending={}",
                stats.available, stats.backplane.subscribed, stats.pending_changes
            )
        }
        _ => format!("error unknown command {line:?}"),
    }
}

/// A worker process and its answers.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(url: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["worker", "--exact", "--ignored", "--nocapture"])
            .env(WORKER_URL, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (send, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(answer) = line.strip_prefix("@@ ") {
                    let _ = send.send(answer.to_owned());
                }
            }
        });
        let mut worker = Self {
            child,
            stdin,
            answers,
        };
        assert_eq!(worker.next_answer(), "ready");
        worker
    }

    fn next_answer(&mut self) -> String {
        self.answers
            .recv_timeout(Duration::from_secs(10))
            .expect("the worker answers within 10 s")
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("the worker reads");
        self.next_answer()
    }

    /// Asks until the answer satisfies `done`, up to `limit`; the last answer.
    fn ask_until(
        &mut self,
        command: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let answer = self.ask(command);
            if done(&answer) {
                return Ok(answer);
            }
            if start.elapsed() > limit {
                return Err(answer);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads `key` until a local copy of `value` stays: the announcement of the write that
    /// stored it may arrive after the first read and drop the copy that read took.
    fn hold(&mut self, key: &str, value: &str) {
        let start = Instant::now();
        while self.ask(&format!("get {key}")) != value || self.ask(&format!("local {key}")) != value
        {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "no copy of {key} = {value} stayed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_processes_share_one_redis_through_a_kill_and_a_restart() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let (mut one, mut two) = (Worker::spawn(&url), Worker::spawn(&url));
    for worker in [&mut one, &mut two] {
        let subscribed = worker.ask_until("stats", Duration::from_secs(5), |stats| {
            stats.contains("subscribed=true")
        });
        assert!(subscribed.is_ok(), "{subscribed:?}");
    }

    // Writes and removals on one reach the other.
    assert_eq!(one.ask("set a 1"), "ok");
    two.hold("a", "1");
    assert_eq!(one.ask("set a 2"), "ok");
    let told = two.ask_until("local a", Duration::from_secs(1), |a| a != "1");
    assert!(told.is_ok(), "two dropped its copy of a: {told:?}");
    assert_eq!(two.ask("get a"), "2");
    assert_eq!(one.ask("delete a"), "ok");
    let told = two.ask_until("get a", Duration::from_secs(1), |a| a == "none");
    assert!(told.is_ok(), "the removal reached two: {told:?}");

    // Two holds copies; Redis dies; one changes them while it is down.
    for key in ["b", "c"] {
        assert_eq!(one.ask(&format!("set {key} 1")), "ok");
        two.hold(key, "1");
    }
    server.kill();
    assert_eq!(one.ask("delete b"), "ok", "a removal is queued, not failed");
    assert_eq!(one.ask("set c 2"), "queued");
    assert_eq!(one.ask("local c"), "2", "one reads its own write");
    assert_eq!(two.ask("get fresh"), "none", "a dead Redis is a miss");

    server.restart();
    let back = Instant::now();
    // Recovered: two writes and one reads it. Two writes again after a miss: a removal its
    // replay sent before the write can reach Redis after it when the first timed out on our
    // side (Redis still ran it), which costs a miss, never a stale read.
    let (mut wrote, mut read) = (String::new(), String::new());
    while !(wrote == "ok" && read == "5") {
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "not recovered 2 s after Redis came back: two's write {wrote:?}, one's read {read:?}"
        );
        wrote = two.ask("set e 5");
        read = one.ask("get e");
        std::thread::sleep(Duration::from_millis(5));
    }
    let replayed = one.ask_until("stats", Duration::from_secs(2), |s| s.contains("pending=0"));
    assert!(
        replayed.is_ok(),
        "one's waiting changes were applied: {replayed:?}"
    );
    println!(
        "the tier recovered {:?} after Redis came back",
        back.elapsed()
    );
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "recovered within 2 s of Redis coming back"
    );

    // No stale value survives: two dropped its copies (resubscription or replay), and Redis
    // holds neither key.
    for key in ["b", "c"] {
        let dropped = two.ask_until(&format!("local {key}"), Duration::from_secs(2), |v| {
            v == "none"
        });
        assert!(dropped.is_ok(), "two's copy of {key}: {dropped:?}");
        assert_eq!(two.ask(&format!("get {key}")), "none", "Redis's {key}");
    }
    // One may have dropped its own write's copy on resubscribing; it never reads the old one.
    assert_ne!(one.ask("get c"), "1");
}
