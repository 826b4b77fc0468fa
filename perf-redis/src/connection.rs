//! The connections behind [`RedisTier`](crate::RedisTier): one Redis server or a Redis Cluster.
//!
//! A one-key command goes to either as it is: a cluster connection sends it to the primary
//! of the key's hash slot. What a cluster changes:
//!
//! - a multi-key command must keep to one slot (else CROSSSLOT), so MGET and UNLINK are split
//!   per slot, sent concurrently and their replies put back in the asked order;
//! - SCAN walks one node's keys, so a scan visits every primary in turn;
//! - SUBSCRIBE holds one node's connection, which is enough since a cluster delivers every
//!   PUBLISH to every node; the subscriber moves to the next given node when it drops.

use std::{collections::HashMap, fmt};

use deadpool_redis::{
    Config, PoolConfig, Runtime, cluster,
    redis::{
        self, Cmd, FromRedisValue, Value,
        cluster::NodeAddress,
        cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot},
    },
};
use futures_util::future;

use crate::{Error, pool};

/// Where the tier connects, as the builder was told.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Server(Config),
    Cluster(cluster::Config),
}

impl Target {
    /// The pool, and one pub/sub client per node to try in turn (a server's list has one).
    pub(crate) fn connect(
        &self,
        pool: PoolConfig,
    ) -> Result<(Connections, Vec<redis::Client>), Error> {
        match self {
            Target::Server(config) => {
                let mut config = config.clone();
                config.pool = Some(pool);
                let client = match (&config.url, &config.connection) {
                    (Some(url), _) => redis::Client::open(url.as_str()),
                    (None, Some(info)) => {
                        redis::Client::open(redis::ConnectionInfo::from(info.clone()))
                    }
                    (None, None) => redis::Client::open("redis://127.0.0.1/"),
                }
                .map_err(config_error)?;
                let manager = match (&config.url, &config.connection) {
                    (Some(url), None) => deadpool_redis::Manager::new(url.as_str()),
                    (None, Some(info)) => deadpool_redis::Manager::new(info.clone()),
                    (None, None) => {
                        deadpool_redis::Manager::new(deadpool_redis::ConnectionInfo::default())
                    }
                    (Some(_), Some(_)) => {
                        return Err(config_error(
                            deadpool_redis::ConfigError::UrlAndConnectionSpecified,
                        ));
                    }
                }
                .map_err(config_error)?;
                // Checks a connection only when it is not trusted (see `pool.rs`); a cluster's
                // pool keeps deadpool-redis's check at every checkout.
                let pool = pool::Pool::builder(pool::Manager::new(manager))
                    .config(config.get_pool_config())
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(config_error)?;
                Ok((Connections::Server(pool), vec![client]))
            }
            Target::Cluster(config) => {
                let mut config = config.clone();
                config.pool = Some(pool);
                let clients = match (&config.urls, &config.connections) {
                    (Some(urls), _) => urls
                        .iter()
                        .map(|url| redis::Client::open(url.as_str()))
                        .collect::<Result<Vec<_>, _>>(),
                    (None, Some(infos)) => infos
                        .iter()
                        .map(|info| redis::Client::open(redis::ConnectionInfo::from(info.clone())))
                        .collect(),
                    (None, None) => Ok(Vec::new()),
                }
                .map_err(config_error)?;
                if clients.is_empty() {
                    return Err(Error::config("a cluster needs at least one node URL"));
                }
                let pool = config
                    .create_pool(Some(Runtime::Tokio1))
                    .map_err(config_error)?;
                Ok((Connections::Cluster(pool), clients))
            }
        }
    }
}

/// Pooled connections to a server or to a cluster.
#[derive(Clone)]
pub(crate) enum Connections {
    Server(pool::Pool),
    Cluster(cluster::Pool),
}

// A cluster pool is not `Debug` (its connections are not).
impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, status) = match self {
            Connections::Server(pool) => ("Server", pool.status()),
            Connections::Cluster(pool) => ("Cluster", pool.status()),
        };
        f.debug_tuple(kind).field(&status).finish()
    }
}

impl Connections {
    /// One command, routed by its key on a cluster.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        match self {
            Connections::Server(pool) => pool::query(pool, cmd).await,
            Connections::Cluster(pool) => {
                let mut conn = pool.get().await.map_err(Error::Pool)?;
                cmd.query_async(&mut conn).await.map_err(Error::Redis)
            }
        }
    }

    /// `used_memory` from `INFO memory`: the server's, or the sum over a cluster's primaries.
    pub(crate) async fn used_memory(&self) -> Result<u64, Error> {
        let info = redis::cmd("INFO").arg("memory").clone();
        match self {
            Connections::Server(_) => parse_used_memory(&self.query::<String>(&info).await?),
            Connections::Cluster(pool) => {
                let mut conn = pool.get().await.map_err(Error::Pool)?;
                let every_primary =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = conn
                    .route_command(info, every_primary)
                    .await
                    .and_then(Value::extract_error)
                    .map_err(Error::Redis)?;
                let by_node: HashMap<String, String> =
                    redis::from_redis_value(reply).map_err(|e| Error::Redis(e.into()))?;
                by_node
                    .values()
                    .map(|info| parse_used_memory(info))
                    .sum::<Result<u64, Error>>()
            }
        }
    }

    /// The values at `keys`, in their order: one MGET, or on a cluster one per hash slot.
    pub(crate) async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Connections::Server(_) => self.query(redis::cmd("MGET").arg(keys)).await,
            Connections::Cluster(pool) => {
                let conn = pool.get().await.map_err(Error::Pool)?;
                let slots = by_slot(keys);
                let replies = future::try_join_all(slots.iter().map(|positions| {
                    // Clones share the pooled connection's per-node connections, whose
                    // writes pipeline the per-slot commands.
                    let mut conn = cluster::ClusterConnection::clone(&conn);
                    let mut cmd = redis::cmd("MGET");
                    for &i in positions {
                        cmd.arg(&keys[i]);
                    }
                    async move { cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await }
                }))
                .await
                .map_err(Error::Redis)?;
                Ok(in_order(keys.len(), &slots, replies))
            }
        }
    }

    /// Removes `keys`: one UNLINK, or on a cluster one per hash slot. Returns how many existed.
    pub(crate) async fn unlink(&self, keys: &[String]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        match self {
            Connections::Server(_) => self.query(redis::cmd("UNLINK").arg(keys)).await,
            Connections::Cluster(pool) => {
                let conn = pool.get().await.map_err(Error::Pool)?;
                let removed = future::try_join_all(by_slot(keys).into_iter().map(|positions| {
                    let mut conn = cluster::ClusterConnection::clone(&conn);
                    let mut cmd = redis::cmd("UNLINK");
                    for i in positions {
                        cmd.arg(&keys[i]);
                    }
                    async move { cmd.query_async::<u64>(&mut conn).await }
                }))
                .await
                .map_err(Error::Redis)?;
                Ok(removed.into_iter().sum())
            }
        }
    }

    /// The next page of a SCAN over the whole keyspace (every primary of a cluster); nothing
    /// once [`Scan::is_done`]. `scan` moves on only when a page arrived.
    pub(crate) async fn scan(
        &self,
        scan: &mut Scan,
        pattern: &str,
        count: usize,
    ) -> Result<Vec<String>, Error> {
        let page = |cursor: u64| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count)
                .clone()
        };
        let Some((node, cursor)) = scan.position() else {
            return Ok(Vec::new());
        };
        match (self, node) {
            (Connections::Server(_), _) => {
                let (next, keys): (u64, Vec<String>) = self.query(&page(cursor)).await?;
                scan.advance([(None, next)]);
                Ok(keys)
            }
            // The first page: SCAN 0 on every primary at once, each reply keyed by its node.
            (Connections::Cluster(pool), None) => {
                let mut conn = pool.get().await.map_err(Error::Pool)?;
                let every_primary =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = conn
                    .route_command(page(0), every_primary)
                    .await
                    .and_then(Value::extract_error)
                    .map_err(Error::Redis)?;
                let pages: HashMap<String, (u64, Vec<String>)> =
                    redis::from_redis_value(reply).map_err(|e| Error::Redis(e.into()))?;
                let mut keys = Vec::new();
                let mut next = Vec::with_capacity(pages.len());
                for (address, (cursor, page)) in pages {
                    let node = address.parse::<NodeAddress>().map_err(Error::Redis)?;
                    next.push((Some(node), cursor));
                    keys.extend(page);
                }
                scan.advance(next);
                Ok(keys)
            }
            (Connections::Cluster(pool), Some(node)) => {
                let mut conn = pool.get().await.map_err(Error::Pool)?;
                let at_node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: node.host().to_owned(),
                    port: node.port(),
                });
                let reply = conn
                    .route_command(page(cursor), at_node)
                    .await
                    .map_err(Error::Redis)?;
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(|e| Error::Redis(e.into()))?;
                scan.advance([(Some(node), next)]);
                Ok(keys)
            }
        }
    }
}

/// Where a SCAN over the whole keyspace stands.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    started: bool,
    /// Nodes with keys left to scan and their cursors (no node: a lone server).
    pending: Vec<(Option<NodeAddress>, u64)>,
}

impl Scan {
    pub(crate) fn is_done(&self) -> bool {
        self.started && self.pending.is_empty()
    }

    /// Where the next page comes from: first cursor 0 of the server (or of every primary),
    /// then a node's cursor; `None` once done.
    fn position(&self) -> Option<(Option<NodeAddress>, u64)> {
        if !self.started {
            return Some((None, 0));
        }
        self.pending.last().cloned()
    }

    /// Replaces the position just read with where its nodes go on: the cursors that are not
    /// back to 0.
    fn advance(&mut self, next: impl IntoIterator<Item = (Option<NodeAddress>, u64)>) {
        if self.started {
            self.pending.pop();
        }
        self.started = true;
        self.pending
            .extend(next.into_iter().filter(|&(_, cursor)| cursor != 0));
    }
}

/// The `used_memory:<bytes>` line of an `INFO memory` reply.
fn parse_used_memory(info: &str) -> Result<u64, Error> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix("used_memory:"))
        .and_then(|bytes| bytes.parse().ok())
        .ok_or_else(|| {
            // About the reply, not Redis's health: not held against the circuit breaker.
            Error::Redis(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO memory reply without a used_memory line",
            )))
        })
}

fn config_error(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::config_from(error)
}

/// The positions of `keys` grouped by hash slot, slots in order of first appearance.
fn by_slot(keys: &[String]) -> Vec<Vec<usize>> {
    let mut slots: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<Slot, usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let group = *index.entry(Slot::for_key(key)).or_insert_with(|| {
            slots.push(Vec::new());
            slots.len() - 1
        });
        slots[group].push(i);
    }
    slots
}

/// Puts per-slot replies back in the order of the keys they answer.
fn in_order<T: Default + Clone>(len: usize, slots: &[Vec<usize>], replies: Vec<Vec<T>>) -> Vec<T> {
    let mut out = vec![T::default(); len];
    for (positions, values) in slots.iter().zip(replies) {
        for (&i, value) in positions.iter().zip(values) {
            out[i] = value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_slot_and_replies_put_back_in_order() {
        // A hash tag pins a key's slot: `{a}` keys share one, `{b}` keys another.
        let keys: Vec<String> = ["{a}1", "{b}1", "{a}2", "{c}1", "{b}2"]
            .map(String::from)
            .into();
        let slots = by_slot(&keys);
        assert_eq!(slots, [vec![0, 2], vec![1, 4], vec![3]]);
        let replies = vec![
            vec![Some("a1"), None],
            vec![Some("b1"), Some("b2")],
            vec![None],
        ];
        assert_eq!(
            in_order(keys.len(), &slots, replies),
            [Some("a1"), Some("b1"), None, None, Some("b2")]
        );
    }

    #[test]
    fn used_memory_is_read_from_its_line_and_a_reply_without_it_is_an_error() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        assert_eq!(parse_used_memory(info).ok(), Some(1_048_576));
        for bad in ["# Memory\r\n", "used_memory:lots\r\n", ""] {
            assert!(
                matches!(parse_used_memory(bad), Err(ref e) if e.is_about_data()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_cluster_needs_a_node() {
        let nowhere = Target::Cluster(cluster::Config::from_urls(Vec::<String>::new()));
        let refused = nowhere.connect(PoolConfig::default());
        assert!(
            matches!(refused, Err(Error::Config { source: None, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_scan_goes_on_at_every_node_until_each_cursor_is_back_to_zero() {
        let node = |port| Some(NodeAddress::new("127.0.0.1", port));
        let mut scan = Scan::default();
        assert_eq!(scan.position(), Some((None, 0)));
        scan.advance([(node(1), 5), (node(2), 0), (node(3), 9)]);
        assert_eq!(scan.position(), Some((node(3), 9)));
        scan.advance([(node(3), 0)]);
        assert_eq!(scan.position(), Some((node(1), 5)));
        scan.advance([(node(1), 6)]);
        assert_eq!(scan.position(), Some((node(1), 6)));
        assert!(!scan.is_done());
        scan.advance([(node(1), 0)]);
        assert_eq!(scan.position(), None);
        assert!(scan.is_done());

        let mut server = Scan::default();
        server.advance([(None, 17)]);
        assert_eq!(server.position(), Some((None, 17)));
        server.advance([(None, 0)]);
        assert_eq!(server.position(), None);
    }
}
