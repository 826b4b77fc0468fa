//! The Redis tier of perf's multi-level cache: one cache shared by every instance of a
//! service, kept coherent by an invalidation backplane, and surviving Redis failures.
//!
//! [`RedisTier`] implements [`perf_core::RemoteTier`] over a deadpool-redis pool, to one
//! server ([`RedisTier::builder`]) or to a Redis Cluster ([`RedisTier::cluster_builder`]):
//!
//! - keys live under a namespace prefix (`{namespace}:{key}`), with TTLs in milliseconds (PX);
//! - every operation runs under a timeout and a circuit breaker, so that a dead Redis costs
//!   nothing after the first failures: reads become misses, writes counted failures, and a
//!   probe after a cool-down decides when it is back;
//! - a backplane on Redis pub/sub (one channel per namespace) tells other instances which keys
//!   changed so that they drop their L1/L2 copies; a dropped subscription resubscribes and
//!   drops every local copy of a shared value, since changes may have been missed;
//! - optionally ([`RedisTierBuilder::server_assisted_invalidation`]), Redis itself reports
//!   every change to the namespace's keys, so that writes made outside perf drop local
//!   copies too;
//! - a removal or announcement that cannot reach Redis is kept and replayed when Redis
//!   answers again (see below), so a write's success does not depend on Redis being up.
//!
//! # What can be stale, and for how long
//!
//! - **The instance that made a change:** nothing. Its own copies go before the call
//!   returns, and while a removal waits for Redis, its reads of that key do not ask Redis.
//! - **Other instances, Redis answering:** a copy goes when the announcement arrives (a few
//!   milliseconds; see the README for measured p50/p99). A read that raced the change keeps
//!   no copy of what it read (the cache checks a per-key invalidation count after copying).
//! - **A change that could not reach Redis** (down, frozen, timing out): `delete`,
//!   `invalidate_prefix` and `clear` return `Ok` and a write returns
//!   [`perf_core::Error::RemoteQueued`]; the tier keeps the change (coalesced per key) and,
//!   the first time Redis answers again (a probe every quarter of the breaker's cool-down,
//!   at most every second), removes it from Redis and announces it. A failed write becomes a
//!   removal: afterwards no instance serves the value it replaced. Instances whose
//!   subscription dropped meanwhile drop every shared copy when they resubscribe. The bound
//!   is the outage plus one replay.
//! - **Writes made outside perf** (another program's SET or DEL): only with
//!   [`server_assisted_invalidation`](RedisTierBuilder::server_assisted_invalidation), in
//!   about the time of a backplane message; without it, until the copies' TTL.
//! - **Not covered:** changes still waiting when their instance exits are lost, and other
//!   instances keep their copies until their TTL. Past
//!   [`pending_changes_limit`](RedisTierBuilder::pending_changes_limit) waiting keys, the
//!   tier clears its whole namespace instead, which is correct and costs misses.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use perf_core::PerformanceOptimizer;
//! use perf_redis::RedisTier;
//!
//! let redis = RedisTier::builder("redis://127.0.0.1:6379").namespace("ads").build().await?;
//! let optimizer = PerformanceOptimizer::builder().remote_tier(redis).build()?.install()?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backplane;
mod breaker;
mod connection;
mod error;
mod pending;
mod pool;
mod tier;
mod tracking;

pub use breaker::BreakerState;
/// The pool crate, for [`RedisTier::builder_from_config`] and the errors [`Error`] wraps.
pub use deadpool_redis;
pub use error::Error;
pub use tier::{BackplaneStats, RedisStats, RedisTier, RedisTierBuilder};
