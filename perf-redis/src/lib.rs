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
//!   drops every local copy of a shared value, since changes may have been missed.
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

mod backplane;
mod breaker;
mod connection;
mod error;
mod tier;

pub use breaker::BreakerState;
/// The pool crate, for [`RedisTier::builder_from_config`] and the errors [`Error`] wraps.
pub use deadpool_redis;
pub use error::Error;
pub use tier::{BackplaneStats, RedisStats, RedisTier, RedisTierBuilder};
