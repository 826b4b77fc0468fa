//! perf-core: the engine of `perf`. No HTTP, no Redis, no proc macros; those crates build on
//! this one.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | [`PerformanceConfig`]: every knob, defaults, validation, TOML and `PERF_*` loading |
//! | [`cache`] | [`MultiLevelCache`]: L1 typed TTL tier, L2 compressed byte tier, [`RemoteTier`]; its API in `cache`, its engine in `cache::engine` |
//! | [`memory`] | [`MemoryManager`](memory::MemoryManager): RSS sampling against a limit, cleanup, allocator purge, allocation tracking |
//! | [`tasks`] | [`TaskManager`](tasks::TaskManager): bounded pool, batches, timeouts, cancellation, stats |
//! | [`query`] | [`QueryOptimizer`](query::QueryOptimizer): query timing, shapes, slow queries, the result cache |
//! | [`monitor`] | operation timing behind `#[performance_monitor]` and [`performance_context`] |
//! | [`metrics`] | the metric catalogue and [`metrics::describe_all`] |
//! | [`alerts`] | alert rules and recommendations from a stats snapshot; the background evaluation's window, state and webhook |
//! | [`system`] | the machine's CPU, memory, disks and network, through sysinfo (feature `system`) |
//! | `profiling` | `profiling_enabled`: the switch that puts cache, Redis, task and query operations in `tracing` spans |
//! | [`optimizer`] | [`PerformanceOptimizer`]: one of each component, [`global`], background loops ([`BackgroundTasks`]) |
//!
//! Dependencies point one way: the optimizer uses the components, never the reverse, and no
//! two modules import each other (`tests/module_graph.rs` checks). The macros' generated code
//! reaches this crate only through the `macro_support` module (not a stable API).
//!
//! | feature (default on) | adds |
//! |---|---|
//! | `sql` | query shapes through sqlparser's tokenizer; without it a shape is the query's text, and invalidating a table drops every cached query result |
//! | `system` | [`system::SystemMonitor`] (sysinfo) and the resource alerts; without it the memory manager still samples the process (from `/proc` on Linux) |
//! | `config-load` | [`PerformanceConfig::load`] and the other loaders: TOML and `PERF_*` variables (figment) |
//!
//! Off by default: `webhook` POSTs alert transitions to `alert_webhook_url` (hyper's client;
//! perf-http turns it on), `jemalloc`, `sqlx`, `conformance`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod alerts;
pub mod cache;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
#[doc(hidden)]
pub mod conformance;
mod error;
#[doc(hidden)]
pub mod macro_support;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod optimizer;
mod profiling;
pub mod query;
mod spare;
mod static_or_shared;
mod striped;
mod sync;
pub mod system;
pub mod tasks;

pub use cache::{CacheStats, MultiLevelCache, RemoteTier, Tier, TierStats};
#[cfg(feature = "config-load")]
#[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
pub use config::LoadError;
pub use config::{ConfigError, FieldError, PerformanceConfig};
pub use error::{EncodeError, Error, InstallError, RemoteError, SharedFailure, StartError};
pub use memory::CleanupSkipped;
pub use optimizer::{
    BackgroundTasks, HOT_FIELDS, OptimizerBuilder, PerformanceOptimizer, global,
    performance_context,
};
#[doc(hidden)]
pub use static_or_shared::StaticOrShared;
pub use tasks::TaskError;
