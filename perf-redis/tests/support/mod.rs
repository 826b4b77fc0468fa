//! A real `redis-server` on a free loopback port, for as long as the test holds it (and, in
//! [`cluster`], a real Redis Cluster).
//!
//! Without the binary the tests print why and skip, unless `PERF_REQUIRE_REDIS=1` (set by
//! `.ci/run`), which makes a missing server a failure.

#[allow(dead_code)] // not every test binary starts a cluster
pub(crate) mod cluster;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub(crate) struct RedisServer {
    port: u16,
    extra_args: Vec<String>,
    /// For a TLS server: the directory holding its self-signed certificate.
    tls_dir: Option<std::path::PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or returns `None` (having said why) when there is no binary and
    /// Redis is not required.
    pub(crate) fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--requirepass", "secret"]`).
    pub(crate) fn start_with(extra_args: &[&str]) -> Option<Self> {
        if !installed("redis-server", "redis-server") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free loopback port");
        let extra_args = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let mut server = Self {
            port,
            extra_args,
            tls_dir: None,
            child: None,
        };
        server.restart();
        Some(server)
    }

    pub(crate) fn url(&self) -> String {
        if self.tls_dir.is_some() {
            // A self-signed certificate: skip verification (test servers only).
            format!("rediss://127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://127.0.0.1:{}/", self.port)
        }
    }

    /// A server that speaks only TLS, with a fresh self-signed certificate made by the
    /// `openssl` command.
    #[allow(dead_code)] // only the TLS test, behind the `tls` feature, uses it
    pub(crate) fn start_tls() -> Option<Self> {
        let mut server = Self::start()?;
        server.kill();
        let dir = std::env::temp_dir().join(format!("perf-redis-tls-{}", server.port));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(made, "openssl could not make a test certificate");
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        server.extra_args = vec![
            "--tls-port".into(),
            server.port.to_string(),
            "--port".into(),
            "0".into(),
            "--tls-cert-file".into(),
            path("cert.pem"),
            "--tls-key-file".into(),
            path("key.pem"),
            "--tls-ca-cert-file".into(),
            path("cert.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        server.tls_dir = Some(dir);
        server.restart();
        Some(server)
    }

    #[allow(dead_code)] // not every test binary asks
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would: no shutdown handshake).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    #[allow(dead_code)] // not every test binary freezes its server
    pub(crate) fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    #[allow(dead_code)]
    pub(crate) fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|status| status.success());
        assert!(sent, "kill {signal} {pid}");
    }

    /// Starts the server again on the same port, empty.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls_dir.is_some() {
            return true; // listening is enough: speaking TLS here is the client's job
        }
        // Any reply will do: a server with a password answers PING with -NOAUTH.
        let mut reply = [0u8; 1];
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .is_ok()
            && stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && matches!(reply[0], b'+' | b'-')
    }

    /// A raw connection for checking what Redis holds, bypassing the tier.
    #[allow(dead_code)]
    pub(crate) fn client(&self) -> deadpool_redis::redis::Client {
        deadpool_redis::redis::Client::open(self.url()).expect("valid URL")
    }
}

/// A cache with default settings over `tier`.
#[allow(dead_code)] // not every user of this module builds one
pub(crate) fn cache_over(
    tier: &std::sync::Arc<perf_redis::RedisTier>,
) -> perf_core::MultiLevelCache {
    perf_core::MultiLevelCache::builder(&perf_core::PerformanceConfig::default())
        .remote_tier(std::sync::Arc::clone(tier) as std::sync::Arc<dyn perf_core::RemoteTier>)
        .build()
        .expect("valid config")
}

/// The local (L1 or L2) copy of a `u32` at `key`, without asking the remote tier.
#[allow(dead_code)] // not every user of this module reads one
pub(crate) async fn local(cache: &perf_core::MultiLevelCache, key: &str) -> Option<u32> {
    cache
        .get::<u32>(key, perf_core::Tier::L2)
        .await
        .expect("a valid key")
        .map(|value| *value)
}

/// Waits until `check` holds, up to `limit`; returns how long it took.
#[allow(dead_code)] // not every user of this module polls
pub(crate) async fn within(
    limit: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Whether `binary` runs; when it does not, says so and returns `false`, or fails the test
/// under `PERF_REQUIRE_REDIS=1`.
pub(crate) fn installed(binary: &str, package: &str) -> bool {
    installed_unless_required(binary, package, "PERF_REQUIRE_REDIS")
}

/// Whether `binary` runs; when it does not, says so and returns `false`, or fails the test
/// when the environment variable `require` is `1`.
pub(crate) fn installed_unless_required(binary: &str, package: &str, require: &str) -> bool {
    let available = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !available {
        let required = std::env::var(require).is_ok_and(|v| v == "1");
        assert!(!required, "{require}=1 but no {binary} binary is on PATH");
        eprintln!("skipping: no {binary} binary on PATH (install {package} to run)");
    }
    available
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
