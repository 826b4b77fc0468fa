//! Connection pools the query optimizer reports on: their size, idle and busy connections,
//! and how often and how long callers waited for one, in `/performance/database/stats` and
//! as `database_pool_*` metrics.
//!
//! perf opens no connection itself: the application keeps its pool and hands the optimizer
//! something that reads it ([`PoolSource`]). With feature `sqlx`, [`WatchedPool`] wraps a
//! sqlx pool and counts the waits, which sqlx does not.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::Serialize;

use crate::metrics::{
    self, Batched, DATABASE_POOL_CONNECTIONS, DATABASE_POOL_MAX_CONNECTIONS,
    DATABASE_POOL_WAITS_TOTAL, labels,
};

/// Pools one optimizer reports on; each name at most once.
const MAX_POOLS: usize = 16;

/// A connection pool now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PoolStats {
    /// The most connections the pool opens.
    pub max_size: u32,
    /// Connections open now, idle or in use.
    pub size: u32,
    /// Open connections no one holds.
    pub idle: u32,
    /// Connections held by a caller.
    pub in_use: u32,
    /// Acquisitions that found no idle connection, so waited for one to be returned or
    /// opened, since the pool was watched.
    pub waits: u64,
    /// The time those acquisitions waited, in all (not a metric: `metrics` counters count
    /// whole numbers).
    pub wait_seconds: f64,
}

/// Reads a connection pool's state. Cheap: it is called on every metrics flush (every
/// second) and every `GET /performance/database/stats`.
pub trait PoolSource: Send + Sync {
    /// The pool now.
    fn pool_stats(&self) -> PoolStats;
}

/// A pool's state under the name it was watched with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedPoolStats {
    /// The name given to [`watch_pool`](super::QueryOptimizer::watch_pool).
    pub name: String,
    /// Its state.
    #[serde(flatten)]
    pub stats: PoolStats,
}

/// The pools one optimizer watches, for as long as each lives.
#[derive(Default)]
pub(super) struct Pools {
    watched: Mutex<Vec<(String, Weak<dyn PoolSource>)>>,
    /// Waits already given to the recorder, per pool name.
    published: Mutex<Vec<(String, u64)>>,
}

impl Pools {
    /// Watches `source` under `name`, replacing a pool of that name. Errs past
    /// [`MAX_POOLS`] names (the metrics' `pool` label stays bounded).
    pub(super) fn watch(
        &self,
        name: &str,
        source: &Arc<dyn PoolSource>,
    ) -> Result<(), crate::Error> {
        let mut watched = self.watched.lock();
        watched.retain(|(_, pool)| pool.strong_count() > 0);
        let source = Arc::downgrade(source);
        if let Some(slot) = watched.iter_mut().find(|(known, _)| known == name) {
            slot.1 = source;
            return Ok(());
        }
        if watched.len() >= MAX_POOLS {
            return Err(crate::Error::TooManyPools {
                name: name.to_owned(),
                limit: MAX_POOLS,
            });
        }
        watched.push((name.to_owned(), source));
        Ok(())
    }

    /// Every live pool now, in the order they were watched.
    pub(super) fn stats(&self) -> Vec<NamedPoolStats> {
        self.watched
            .lock()
            .iter()
            .filter_map(|(name, pool)| {
                Some(NamedPoolStats {
                    name: name.clone(),
                    stats: pool.upgrade()?.pool_stats(),
                })
            })
            .collect()
    }
}

impl Batched for Pools {
    /// Sets the gauges from each pool now and gives the counters what changed since the
    /// last flush.
    fn flush(&self) {
        let now = self.stats();
        let mut published = self.published.lock();
        for NamedPoolStats { name, stats } in now {
            let pool = name.clone();
            for (state, count) in [("idle", stats.idle), ("in_use", stats.in_use)] {
                ::metrics::gauge!(metrics::name(DATABASE_POOL_CONNECTIONS),
                    labels::POOL => pool.clone(), labels::STATE => state)
                .set(f64::from(count));
            }
            ::metrics::gauge!(metrics::name(DATABASE_POOL_MAX_CONNECTIONS), labels::POOL => pool.clone())
                .set(f64::from(stats.max_size));
            let index = published
                .iter()
                .position(|(known, _)| *known == name)
                .unwrap_or_else(|| {
                    published.push((name, 0));
                    published.len() - 1
                });
            let given = &mut published[index].1;
            ::metrics::counter!(metrics::name(DATABASE_POOL_WAITS_TOTAL), labels::POOL => pool)
                .increment(stats.waits.saturating_sub(*given));
            *given = stats.waits;
        }
    }
}

/// Registers `pools` to be flushed with the other batched metrics.
pub(super) fn register(pools: &Arc<Pools>) {
    let weak: Weak<dyn Batched> = Arc::downgrade(pools) as Weak<Pools>;
    metrics::register_batched(weak);
}

#[cfg(feature = "sqlx")]
pub use self::sqlx::WatchedPool;

#[cfg(feature = "sqlx")]
mod sqlx {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::Instant,
    };

    use sqlx_core::{
        database::Database,
        pool::{Pool, PoolConnection},
    };

    use super::{PoolSource, PoolStats};

    /// A sqlx pool that counts the acquisitions that had to wait, for
    /// [`watch_pool`](crate::query::QueryOptimizer::watch_pool). Acquire through
    /// [`acquire`](Self::acquire) for the waits to be counted; [`pool`](Self::pool) is the
    /// pool itself, for everything else.
    #[derive(Debug)]
    pub struct WatchedPool<DB: Database> {
        pool: Pool<DB>,
        waits: AtomicU64,
        wait_nanos: AtomicU64,
    }

    impl<DB: Database> WatchedPool<DB> {
        /// Watches `pool`.
        pub fn new(pool: Pool<DB>) -> Self {
            Self {
                pool,
                waits: AtomicU64::new(0),
                wait_nanos: AtomicU64::new(0),
            }
        }

        /// The pool.
        pub fn pool(&self) -> &Pool<DB> {
            &self.pool
        }

        /// A connection, as [`Pool::acquire`]; counted as a wait when no connection was
        /// idle. The time waited is counted even when the caller gives up (the future is
        /// dropped).
        pub async fn acquire(&self) -> Result<PoolConnection<DB>, sqlx_core::Error> {
            if self.pool.num_idle() > 0 {
                return self.pool.acquire().await;
            }
            self.waits.fetch_add(1, Ordering::Relaxed);
            let _waiting = Waiting {
                since: Instant::now(),
                total: &self.wait_nanos,
            };
            self.pool.acquire().await
        }
    }

    /// Adds the time waited when dropped: on return and on cancellation alike.
    struct Waiting<'a> {
        since: Instant,
        total: &'a AtomicU64,
    }

    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            let waited = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.total.fetch_add(waited, Ordering::Relaxed);
        }
    }

    impl<DB: Database> PoolSource for WatchedPool<DB> {
        fn pool_stats(&self) -> PoolStats {
            let size = self.pool.size();
            let idle = u32::try_from(self.pool.num_idle())
                .unwrap_or(u32::MAX)
                .min(size);
            PoolStats {
                max_size: self.pool.options().get_max_connections(),
                size,
                idle,
                in_use: size - idle,
                waits: self.waits.load(Ordering::Relaxed),
                wait_seconds: self.wait_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            }
        }
    }
}
