//! A real three-primary Redis Cluster on loopback, for as long as the test holds it.
//!
//! Three `redis-server --cluster-enabled yes` processes in a temporary directory, joined by
//! `redis-cli --cluster create` (no replicas), ready once every node reports
//! `cluster_state:ok`. Needs `redis-server` and `redis-cli` (package redis-tools); skips
//! without them like [`RedisServer`](super::RedisServer).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use deadpool_redis::redis;

const NODES: usize = 3;

pub(crate) struct RedisCluster {
    ports: Vec<u16>,
    /// One per node; `None` once killed.
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts a cluster, or returns `None` (having said why) when a binary is missing and
    /// Redis is not required.
    pub(crate) fn start() -> Option<Self> {
        if !super::installed("redis-server", "redis-server")
            || !super::installed("redis-cli", "redis-tools")
        {
            return None;
        }
        let ports = free_ports();
        let dir = std::env::temp_dir().join(format!(
            "perf-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cluster = Self {
            children: Vec::new(),
            ports,
            dir,
        };
        // Pushed one by one so that Drop kills whatever started if a later step fails.
        for &port in &cluster.ports.clone() {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.children.push(Some(child));
        }
        for i in 0..NODES {
            cluster.wait_for(i, "to answer PING", |conn| {
                redis::cmd("PING").query::<String>(conn).is_ok()
            });
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        for i in 0..NODES {
            cluster.wait_for(i, "to report cluster_state:ok", |conn| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(conn)
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
        }
        Some(cluster)
    }

    /// Every node's URL, the first `first` rotated to the front: tiers given different
    /// rotations subscribe on different nodes.
    pub(crate) fn urls_from(&self, first: usize) -> Vec<String> {
        let mut urls: Vec<String> = self.ports.iter().map(|port| url(*port)).collect();
        urls.rotate_left(first % NODES);
        urls
    }

    /// Raw connections to each node, bypassing the tier and cluster routing.
    pub(crate) fn nodes(&self) -> Vec<redis::Client> {
        self.ports
            .iter()
            .map(|port| redis::Client::open(url(*port)).expect("valid URL"))
            .collect()
    }

    /// The node serving `key`'s hash slot: the one that does not answer MOVED.
    pub(crate) fn node_serving(&self, key: &str) -> usize {
        self.nodes()
            .iter()
            .position(|node| {
                let mut conn = node.get_connection().expect("connects");
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<u64>(&mut conn)
                    .is_ok()
            })
            .expect("some node serves every slot")
    }

    /// Kills node `i` (as a crash would).
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to 20 s for node `i` to satisfy `check`, on a fresh connection each time.
    fn wait_for(&self, i: usize, what: &str, check: impl Fn(&mut redis::Connection) -> bool) {
        let client = redis::Client::open(url(self.ports[i])).expect("valid URL");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .is_ok_and(|mut conn| check(&mut conn));
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster node on {} did not come {what}",
                self.ports[i]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// Free loopback ports whose cluster bus ports (port + 10000) are free too. The listeners are
/// held until all are chosen, so that no port is picked twice.
fn free_ports() -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < NODES {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("bound").port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus)) {
            ports.push(port);
            held.push(bus_listener);
        }
        held.push(listener);
    }
    ports
}
