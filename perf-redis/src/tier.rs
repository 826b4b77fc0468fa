//! [`RedisTier`]: the shared tier of the multi-level cache, over a deadpool-redis pool.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_redis::{
    Config, PoolConfig, cluster,
    redis::{self, FromRedisValue},
};
use perf_core::{
    RemoteError,
    cache::{BoxFuture, InvalidationSink, RemoteTier},
    metrics::{CACHE_REMOTE_ERRORS_TOTAL, labels::REASON},
};
use serde::Serialize;
use tokio::{sync::mpsc, task::AbortHandle};

use crate::{
    Error,
    backplane::{self, BackplaneState},
    breaker::{Breaker, BreakerState, Transition},
    connection::{Connections, Scan, Target},
    pending::{Change, Pending},
    tracking,
};

/// Keys removed per UNLINK when clearing by pattern.
const UNLINK_BATCH: usize = 500;

/// Builds a [`RedisTier`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RedisTierBuilder {
    target: Target,
    namespace: String,
    op_timeout: Duration,
    pool_size: usize,
    failure_threshold: u32,
    cool_down: Duration,
    instance_id: Option<u64>,
    backplane: bool,
    server_assisted: bool,
    pending_limit: usize,
}

impl RedisTierBuilder {
    /// The prefix of every key this tier writes (`{namespace}:{key}`) and the name of its
    /// invalidation channel. Default `"perf"`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The bound on every operation, connection included. Default 250 ms.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Pooled connections. Default 16.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The breaker opens after `failures` consecutive failures or timeouts and probes again
    /// after `cool_down`. Default 5 failures, 5 s.
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.failure_threshold = failures;
        self.cool_down = cool_down;
        self
    }

    /// This instance's id on the backplane (default: random).
    pub fn instance_id(mut self, id: u64) -> Self {
        self.instance_id = Some(id);
        self
    }

    /// Whether to tell other instances about writes and hear of theirs. Default on.
    pub fn backplane(mut self, enabled: bool) -> Self {
        self.backplane = enabled;
        self
    }

    /// Whether Redis itself reports changes to the namespace's keys, so that a write made
    /// outside perf (`redis-cli SET`, another service) drops every instance's local copy too.
    /// Default off.
    ///
    /// On, the tier keeps one more connection open: a RESP3 connection that turns on
    /// client-side caching in broadcast mode (`CLIENT TRACKING ON BCAST PREFIX
    /// {namespace}:`, Redis 6 or later), on which Redis pushes the name of every key under the
    /// namespace that changes, expires or is evicted. A dropped connection is reopened and
    /// followed by a resync (local copies of shared values dropped), as a dropped backplane
    /// subscription is; a FLUSHALL is a resync too.
    ///
    /// What it costs:
    ///
    /// - Redis sends every tracking instance the name of every changed key under the
    ///   namespace (batched, one message per prefix per event-loop turn), perf's writes
    ///   included: the backplane already reports those, so each of perf's writes is reported
    ///   twice; and on Redis every key write is matched against the tracked prefixes.
    /// - An instance is also told of its own writes (`NOLOOP` spares only the tracking
    ///   connection's own, and writes go through the pool): it drops the copy it just
    ///   stored, so its next read of that key goes to Redis instead of L1/L2. Skipping its own
    ///   keys is not safe: the message does not say who wrote, and a foreign write right
    ///   after ours would be missed.
    /// - Expiry in Redis now drops local copies as well (they would have expired by their own
    ///   TTL at about the same time).
    ///
    /// The pub/sub backplane stays as it is: it carries prefix invalidations and clears
    /// (which tracking reports only as the names of the keys removed, and not at all for
    /// copies whose Redis key had already gone) and the replay of changes made while Redis
    /// did not answer. For perf's own writes the first report to arrive drops the copy:
    /// usually Redis's, which leaves with the write rather than after a separate PUBLISH
    /// (`benches/backplane.rs` measures both).
    ///
    /// A cluster tracks per node, so this mode is refused there: [`build`](Self::build)
    /// returns [`Error::Config`].
    pub fn server_assisted_invalidation(mut self, enabled: bool) -> Self {
        self.server_assisted = enabled;
        self
    }

    /// How many keys' removals and announcements may wait for Redis to come back before they
    /// collapse into one change of everything (a clear of the namespace, an announcement
    /// that drops every shared copy). Default 10,000.
    pub fn pending_changes_limit(mut self, limit: usize) -> Self {
        self.pending_limit = limit;
        self
    }

    /// Builds the tier on the current tokio runtime and checks Redis once. Redis being down is
    /// not an error: the tier starts with its breaker open and reports itself unavailable, and
    /// the cache keeps serving from L1, L2 and loaders until a probe finds Redis back.
    pub async fn build(self) -> Result<Arc<RedisTier>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide crypto provider; an application may have installed
            // its own already, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if self.namespace.is_empty() || self.namespace.contains(['*', '?', '[', ']']) {
            return Err(Error::config(format!(
                "namespace {:?} must be non-empty and free of glob characters",
                self.namespace
            )));
        }
        if self.server_assisted && matches!(self.target, Target::Cluster(_)) {
            return Err(Error::config(
                "server-assisted invalidation is not supported on a cluster (Redis tracks \
                 keys per node)",
            ));
        }
        // No pool timeouts: every call is bounded whole by `op_timeout` (see `guarded`), and
        // each pool timeout would cost a timer per checkout.
        let (pool, subscribers) = self.target.connect(PoolConfig {
            max_size: self.pool_size.max(1),
            ..PoolConfig::default()
        })?;

        let tracker = match (self.server_assisted, subscribers.first()) {
            (true, Some(client)) => Some(tracking::resp3_client(client)?),
            _ => None,
        };
        let instance_id = self.instance_id.unwrap_or_else(perf_core::cache::random_id);
        let channel = format!("{}:__invalidate", self.namespace);
        let backplane_state = Arc::new(BackplaneState::default());
        let pending = Arc::new(Pending::new(self.pending_limit));
        let (changes, queued) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        if self.backplane {
            let publisher = backplane::publish_loop(
                queued,
                pool.clone(),
                channel.clone(),
                instance_id,
                self.op_timeout,
                Arc::clone(&backplane_state),
                Arc::clone(&pending),
            );
            tasks.push(runtime.spawn(publisher).abort_handle());
        }
        let tier = RedisTier {
            pool,
            subscribers,
            tracker,
            prefix: format!("{}:", self.namespace),
            channel,
            op_timeout: self.op_timeout,
            instance_id,
            breaker: Breaker::new(self.failure_threshold, self.cool_down, &self.namespace),
            changes: self.backplane.then_some(changes),
            backplane: backplane_state,
            pending: Arc::clone(&pending),
            replaying: tokio::sync::RwLock::new(()),
            counts: Counts::default(),
            tasks: parking_lot::Mutex::new(tasks),
        };
        if let Err(error) = tier.command::<String>(redis::cmd("PING")).await {
            tracing::warn!(%error, "Redis unreachable at start; serving from local tiers until it answers");
            tier.breaker.force_open();
        }
        let tier = Arc::new(tier);
        let retry = (self.cool_down / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let replayer = replay_loop(Arc::downgrade(&tier), pending, retry);
        tier.tasks
            .lock()
            .push(runtime.spawn(replayer).abort_handle());
        Ok(tier)
    }
}

#[derive(Debug, Default)]
struct Counts {
    errors: AtomicU64,
    timeouts: AtomicU64,
    short_circuited: AtomicU64,
    replays: AtomicU64,
}

/// The Redis tier. Give it to the cache with
/// `PerformanceOptimizer::builder().remote_tier(tier)`.
pub struct RedisTier {
    pool: Connections,
    /// Pub/sub clients for the backplane, tried in turn: a cluster's nodes, or the server.
    subscribers: Vec<redis::Client>,
    /// The RESP3 client of server-assisted invalidation, when on.
    tracker: Option<redis::Client>,
    prefix: String,
    channel: String,
    op_timeout: Duration,
    instance_id: u64,
    breaker: Breaker,
    changes: Option<mpsc::UnboundedSender<Change>>,
    backplane: Arc<BackplaneState>,
    /// Changes that wait for Redis to answer again; see `pending.rs`.
    pending: Arc<Pending>,
    /// Held by the replay while it removes keys, and by writes while changes wait: a write
    /// that reached Redis is never undone by a replay of a removal that it replaced.
    replaying: tokio::sync::RwLock<()>,
    counts: Counts,
    tasks: parking_lot::Mutex<Vec<AbortHandle>>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .field("instance_id", &self.instance_id)
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

/// The tier's health and traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisStats {
    /// The breaker is closed: Redis is being asked.
    pub available: bool,
    /// Where the circuit breaker stands now.
    pub breaker: BreakerState,
    /// Times the breaker opened since the tier was built (also
    /// `cache_breaker_openings_total`).
    pub breaker_openings: u64,
    /// Calls that failed (Redis errors, no connection).
    pub errors: u64,
    /// Calls that got no answer within the operation timeout
    /// ([`op_timeout`](RedisTierBuilder::op_timeout)).
    pub timeouts: u64,
    /// Calls refused at once because the breaker was open.
    pub short_circuited: u64,
    /// Removals and announcements waiting for Redis to answer again (coalesced per key).
    pub pending_changes: u64,
    /// Times waiting changes were applied once Redis answered.
    pub replays: u64,
    /// The invalidation messages between instances.
    pub backplane: BackplaneStats,
}

/// Invalidation traffic between instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackplaneStats {
    /// The subscription to the namespace's channel is up: other instances' changes arrive.
    pub subscribed: bool,
    /// Messages published; each carries a batch of changed keys.
    pub messages_sent: u64,
    /// Messages from other instances applied (this instance's own are ignored, uncounted).
    pub messages_received: u64,
    /// Messages that could not be published in time; their changes wait for Redis and are
    /// announced by the replay.
    pub send_errors: u64,
    /// Times the subscription was reopened after dropping (each drops every local copy of a
    /// shared value, since messages may have been missed).
    pub resubscriptions: u64,
    /// Server-assisted invalidation: the tracking connection is up.
    pub tracking: bool,
    /// Invalidations Redis reported to the tracking connection.
    pub tracked_invalidations: u64,
    /// Times the tracking connection was reopened (each followed by a resync).
    pub tracking_restarts: u64,
}

impl RedisTier {
    /// A builder for a tier at a `redis://` or `rediss://` URL (`redis://:password@host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder {
        Self::builder_from_config(Config::from_url(url))
    }

    /// A builder from a deadpool-redis configuration; its pool size and timeouts are replaced
    /// by the builder's.
    pub fn builder_from_config(config: Config) -> RedisTierBuilder {
        Self::builder_to(Target::Server(config))
    }

    /// A builder for a tier on a Redis Cluster, from the URLs of some of its nodes
    /// (`redis://host:port`, `rediss://…` with feature `tls`); the cluster's other nodes are
    /// found from these.
    ///
    /// A namespace's keys spread over the cluster's hash slots like any other keys: no hash tag
    /// pins them to one slot, which would put the whole cache on one node. So a cluster
    /// tier sends several commands where a server tier sends one:
    ///
    /// - `get_many` sends one MGET per hash slot (the keys of one command must share a slot),
    ///   concurrently, and puts the values back in the asked order;
    /// - `clear` and `invalidate_prefix` SCAN every primary, and UNLINK what they find, one
    ///   command per slot;
    /// - the backplane publishes through the cluster, which delivers a PUBLISH to every node,
    ///   and subscribes on the first of `urls` that answers, moving to the next when its
    ///   connection drops (so give more than one).
    ///
    /// Each pooled connection is a cluster connection, holding one connection per node. The
    /// breaker, the timeout and the counters work as on a server; a `get_many` is one call to
    /// them however many slots it asks.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), perf_redis::Error> {
    /// use perf_redis::RedisTier;
    ///
    /// let redis = RedisTier::cluster_builder([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .namespace("ads")
    /// .build()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder(urls: impl IntoIterator<Item = impl Into<String>>) -> RedisTierBuilder {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        Self::cluster_builder_from_config(cluster::Config::from_urls(urls))
    }

    /// A builder for a tier on a Redis Cluster, from a deadpool-redis cluster configuration
    /// (for `read_from_replicas`, or connection details instead of URLs); its pool size and
    /// timeouts are replaced by the builder's. See [`cluster_builder`](Self::cluster_builder).
    pub fn cluster_builder_from_config(config: cluster::Config) -> RedisTierBuilder {
        Self::builder_to(Target::Cluster(config))
    }

    fn builder_to(target: Target) -> RedisTierBuilder {
        RedisTierBuilder {
            target,
            namespace: "perf".into(),
            op_timeout: Duration::from_millis(250),
            pool_size: 16,
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
            instance_id: None,
            backplane: true,
            server_assisted: false,
            pending_limit: 10_000,
        }
    }

    /// This instance's id on the backplane: its messages carry it, so that it ignores its
    /// own. Random unless set with [`RedisTierBuilder::instance_id`].
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The tier's health and traffic counts now, since it was built.
    pub fn stats(&self) -> RedisStats {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let backplane = &self.backplane;
        RedisStats {
            available: self.breaker.state() == BreakerState::Closed,
            breaker: self.breaker.state(),
            breaker_openings: self.breaker.openings(),
            errors: load(&self.counts.errors),
            timeouts: load(&self.counts.timeouts),
            short_circuited: load(&self.counts.short_circuited),
            pending_changes: self.pending.len() as u64,
            replays: load(&self.counts.replays),
            backplane: BackplaneStats {
                subscribed: backplane.subscribed.load(Ordering::Acquire),
                messages_sent: load(&backplane.sent),
                messages_received: backplane.received.load(Ordering::Acquire),
                send_errors: load(&backplane.send_errors),
                resubscriptions: backplane.resubscriptions.load(Ordering::Acquire),
                tracking: backplane.tracking.load(Ordering::Acquire),
                tracked_invalidations: backplane.tracked.load(Ordering::Acquire),
                tracking_restarts: backplane.tracking_restarts.load(Ordering::Acquire),
            },
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one Redis call under the breaker and the timeout. The breaker's permit settles
    /// the call however it ends, a dropped call included (see `breaker.rs`).
    async fn guarded<T, F>(&self, call: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let Some(permit) = self.breaker.permit(self.op_timeout / 2) else {
            self.counts.short_circuited.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(perf_core::metrics::name(CACHE_REMOTE_ERRORS_TOTAL), REASON => "unavailable").increment(1);
            return Err(Error::Unavailable);
        };
        let result = match tokio::time::timeout(self.op_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.op_timeout)),
        };
        // Redis answered, about the data (a key of another type): it is healthy.
        let healthy = match &result {
            Ok(_) => true,
            Err(error) => {
                let (counter, reason) = match error {
                    Error::Timeout(_) => (&self.counts.timeouts, "timeout"),
                    _ => (&self.counts.errors, "error"),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(perf_core::metrics::name(CACHE_REMOTE_ERRORS_TOTAL), REASON => reason).increment(1);
                error.is_about_data()
            }
        };
        let transition = if healthy {
            permit.succeeded()
        } else {
            permit.failed()
        };
        if transition == Transition::Closed {
            self.pending.nudge();
        }
        result
    }

    /// One command on a pooled connection, under the breaker and the timeout.
    async fn command<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, Error> {
        self.guarded(self.pool.query(&cmd)).await
    }

    /// Removes every key matching `pattern`: SCAN (every primary of a cluster), then UNLINK
    /// in batches. Never FLUSHDB.
    async fn unlink_matching(&self, pattern: &str) -> Result<u64, Error> {
        let mut scan = Scan::default();
        let mut removed = 0;
        while !scan.is_done() {
            let keys = self
                .guarded(self.pool.scan(&mut scan, pattern, UNLINK_BATCH))
                .await?;
            for batch in keys.chunks(UNLINK_BATCH) {
                removed += self.guarded(self.pool.unlink(batch)).await?;
            }
        }
        Ok(removed)
    }

    fn announce(&self, change: Change) {
        if let Some(changes) = &self.changes {
            // The publisher lives as long as the tier; a closed channel means shutdown.
            let _ = changes.send(change);
        }
    }

    /// Runs `call`, which makes `change` in Redis, then announces it. Unless it succeeds, the
    /// change waits for the replay: after an error, and after a drop mid-call too (the caller
    /// gave up; Redis may or may not have run it), through `InFlight`'s `Drop`.
    async fn change<T>(
        &self,
        change: Change,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, RemoteError> {
        let in_flight = self.pending.in_flight(change);
        let done = call.await.map_err(remote)?;
        self.announce(in_flight.applied());
        Ok(done)
    }

    /// Applies the changes that wait for Redis: removes what is still to be removed, then
    /// announces everything, so that no instance keeps a copy older than the changes. Any
    /// failure leaves them waiting (removals and announcements are idempotent).
    async fn replay(&self) -> Result<(), Error> {
        let removing = self.replaying.write().await;
        let Some(snapshot) = self.pending.snapshot() else {
            return Ok(());
        };
        let remove = &snapshot.remove;
        if remove.all.is_some() {
            let pattern = format!("{}*", escape_glob(&self.prefix));
            self.unlink_matching(&pattern).await?;
        } else {
            for prefix in remove.prefixes.keys() {
                let pattern = format!("{}*", escape_glob(&self.key(prefix)));
                self.unlink_matching(&pattern).await?;
            }
            let keys: Vec<String> = remove.keys.keys().map(|key| self.key(key)).collect();
            for batch in keys.chunks(UNLINK_BATCH) {
                self.guarded(self.pool.unlink(batch)).await?;
            }
        }
        drop(removing);
        if self.changes.is_some() {
            for payload in backplane::replay_messages(self.instance_id, &snapshot) {
                let publish = redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(payload)
                    .clone();
                self.command::<i64>(publish).await?;
            }
        }
        self.pending.applied(&snapshot);
        self.counts.replays.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            changes = snapshot.len(),
            "changes kept while Redis was unavailable were replayed"
        );
        Ok(())
    }
}

/// Replays waiting changes for as long as the tier lives: when one is recorded, when the
/// breaker closes, and every `retry` while Redis refuses (the replay may be the breaker's
/// probe itself).
async fn replay_loop(tier: Weak<RedisTier>, pending: Arc<Pending>, retry: Duration) {
    loop {
        pending.woken().await;
        loop {
            let Some(tier) = tier.upgrade() else {
                return;
            };
            match tier.replay().await {
                Ok(()) if pending.len() == 0 => break,
                Ok(()) => continue,
                Err(error) => tracing::debug!(%error, "replay of waiting changes failed; retrying"),
            }
            drop(tier);
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = pending.woken() => {}
            }
        }
    }
}

/// Escapes Redis glob characters so that a prefix matches only itself.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn remote(error: Error) -> RemoteError {
    Box::new(error)
}

impl RemoteTier for RedisTier {
    /// The server's `used_memory` (`INFO memory`), summed over a cluster's primaries:
    /// everything that Redis holds, other namespaces and programs included, not only this
    /// tier's keys. Not asked while the breaker is open.
    fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
        Box::pin(async move {
            if self.breaker.state() != BreakerState::Closed {
                return Ok(None);
            }
            let bytes = self.guarded(self.pool.used_memory()).await;
            bytes.map(Some).map_err(remote)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            if self.pending.hides(key) {
                return Ok(None);
            }
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(key));
            self.command(cmd).await.map_err(remote)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let cmd = redis::cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(millis)
                .clone();
            // A write that fails or is dropped leaves Redis's older value: it goes once Redis
            // answers again.
            let in_flight = self.pending.in_flight(Change::Key(key.to_owned()));
            // While changes wait, a write does not run alongside the replay's removals: its
            // value would be removed after it stored it. The wait is bounded like a call.
            let _writing = if self.pending.len() > 0 {
                let waited = tokio::time::timeout(self.op_timeout, self.replaying.read()).await;
                Some(waited.map_err(|_| remote(Error::Timeout(self.op_timeout)))?)
            } else {
                None
            };
            let mark = self.pending.mark();
            self.command::<()>(cmd).await.map_err(remote)?;
            self.pending.stored(key, mark);
            self.announce(in_flight.applied());
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let unlink = self.command::<u64>(redis::cmd("UNLINK").arg(self.key(key)).clone());
            self.change(Change::Key(key.to_owned()), unlink)
                .await
                .map(drop)
        })
    }

    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let pattern = format!("{}*", escape_glob(&self.key(prefix)));
            self.change(
                Change::Prefix(prefix.to_owned()),
                self.unlink_matching(&pattern),
            )
            .await
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            let pattern = format!("{}*", escape_glob(&self.prefix));
            self.change(Change::All, self.unlink_matching(&pattern))
                .await
                .map(drop)
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, RemoteError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let names: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
            let mut values = self.guarded(self.pool.mget(&names)).await.map_err(remote)?;
            for (value, key) in values.iter_mut().zip(keys) {
                if self.pending.hides(key) {
                    *value = None;
                }
            }
            Ok(values)
        })
    }

    fn replays_failed_changes(&self) -> bool {
        true
    }

    fn namespace(&self) -> &str {
        self.prefix.strip_suffix(':').unwrap_or(&self.prefix)
    }

    fn subscribe(&self, sink: InvalidationSink) {
        if self.changes.is_none() && self.tracker.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the backplane will not hear other instances");
            return;
        };
        // Connecting takes a round trip or two: allow it a few timeouts' worth.
        let timeout = self.op_timeout * 4;
        let mut tasks = self.tasks.lock();
        if let Some(client) = &self.tracker {
            let tracker = tracking::tracking_loop(
                client.clone(),
                self.prefix.clone(),
                timeout,
                Arc::clone(&sink),
                Arc::clone(&self.backplane),
            );
            tasks.push(runtime.spawn(tracker).abort_handle());
        }
        if self.changes.is_some() {
            let listener = backplane::subscribe_loop(
                self.subscribers.clone(),
                self.channel.clone(),
                self.instance_id,
                timeout,
                sink,
                Arc::clone(&self.backplane),
            );
            tasks.push(runtime.spawn(listener).abort_handle());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_prefixes_are_escaped() {
        assert_eq!(escape_glob("ads:user[1]*?\\"), "ads:user\\[1\\]\\*\\?\\\\");
        assert_eq!(escape_glob("plain:"), "plain:");
    }
}
