//! The tier's connection pool: deadpool over deadpool-redis's connections, without a round trip
//! at every checkout.
//!
//! deadpool-redis checks every connection it hands out with an `UNWATCH` + `PING` round trip,
//! which doubles the round trips of a one-command call and halves the reads a pool serves.
//! Here a connection goes out unchecked when Redis answered the last command sent on it, less
//! than [`TRUSTED_FOR`] ago, and no call has found a connection dropped since. Any other one is
//! checked as deadpool-redis checks it: a new use after idling, a connection whose last call
//! failed, timed out or was abandoned mid-flight (its reply may still be on the way), and every
//! connection after a call found one dropped (Redis restarted, or killed our connections).
//!
//! A call that finds an unchecked connection dropped is sent again, once, on a checked one:
//! every command the tier sends may be repeated (reads, `SET` of a whole value, `UNLINK`,
//! `SCAN`, `PUBLISH` of an invalidation).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use deadpool_redis::redis::{
    self, ErrorKind, FromRedisValue, RedisError, aio::MultiplexedConnection,
};

use crate::Error;

/// How long after Redis last answered on it a connection goes out without a check.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

pub(crate) type Pool = deadpool::managed::Pool<Manager>;

/// A pooled connection and what its last call says about it.
pub(crate) struct Connection {
    conn: MultiplexedConnection,
    /// Redis answered the last command sent on it, and nothing was left in flight.
    answered: bool,
    /// [`Manager::drops`] when Redis last answered on it.
    drops_seen: u64,
    /// This checkout was created or checked, not trusted.
    checked: bool,
}

/// deadpool-redis's manager, asked to check a connection only when it is not trusted.
pub(crate) struct Manager {
    inner: deadpool_redis::Manager,
    /// Calls that found a connection dropped: every connection answered on before the last
    /// one is checked before its next use.
    drops: AtomicU64,
}

impl Manager {
    pub(crate) fn new(inner: deadpool_redis::Manager) -> Self {
        Self {
            inner,
            drops: AtomicU64::new(0),
        }
    }
}

impl deadpool::managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        let conn = deadpool::managed::Manager::create(&self.inner).await?;
        Ok(Connection {
            conn,
            answered: false,
            drops_seen: 0,
            checked: true,
        })
    }

    async fn recycle(
        &self,
        conn: &mut Connection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        let trusted = conn.answered
            && conn.drops_seen == self.drops.load(Ordering::Acquire)
            && metrics.last_used() < TRUSTED_FOR;
        conn.checked = !trusted;
        if trusted {
            return Ok(());
        }
        deadpool::managed::Manager::recycle(&self.inner, &mut conn.conn, metrics).await
    }
}

/// Whether Redis answered: the connection is in step (an error reply, a reply of another
/// shape). Anything else (I/O, a parse failure, redis-rs's own timeout) leaves it in doubt.
fn answered(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(_) | ErrorKind::UnexpectedReturnType | ErrorKind::Extension
    )
}

/// `cmd` on a pooled connection. Dropping the future mid-flight leaves the connection to be
/// checked before its next use.
pub(crate) async fn query<T: FromRedisValue>(pool: &Pool, cmd: &redis::Cmd) -> Result<T, Error> {
    let manager = pool.manager();
    let mut retried = false;
    loop {
        let mut conn = pool.get().await.map_err(Error::Pool)?;
        conn.answered = false;
        let result = cmd.query_async::<T>(&mut conn.conn).await;
        let error = match result {
            Ok(value) => {
                conn.answered = true;
                conn.drops_seen = manager.drops.load(Ordering::Acquire);
                return Ok(value);
            }
            Err(error) => error,
        };
        if answered(&error) {
            conn.answered = true;
            conn.drops_seen = manager.drops.load(Ordering::Acquire);
        } else if error.is_connection_dropped() {
            manager.drops.fetch_add(1, Ordering::AcqRel);
            if !conn.checked && !retried {
                retried = true;
                continue;
            }
        }
        return Err(Error::Redis(error));
    }
}
