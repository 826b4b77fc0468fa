//! perf: make a tokio back end fast and observable, with one dependency.
//!
//! | feature | what it adds |
//! |---|---|
//! | (always) | [`MultiLevelCache`] (L1 typed TTL tier, L2 zstd byte tier), [`memory`] (usage, limit, cleanup, allocation tracking), [`tasks`] (bounded task pool), [`query`] (query statistics, slow log, result cache), [`PerformanceConfig`], the metric catalogue, [`PerformanceOptimizer`] and [`global`], the macros |
//! | `sql` (default) | query shapes: literals as placeholders, the tables a query names (sqlparser); without it a shape is the query's text and invalidating a table drops every cached query result |
//! | `system` (default) | the machine's CPU, memory, disks and network (`perf::global().system()`, sysinfo) and the resource alerts |
//! | `config-load` (default) | `PerformanceConfig::load`, `from_env`, `from_toml_*`: TOML and `PERF_*` variables (figment) |
//! | `redis` | `perf::redis`: the Redis tier shared by every instance |
//! | `redis-tls` | `redis`, with `rediss://` URLs (rustls) |
//! | `http` | `perf::http`: the admin API and `/metrics`; turns on `webhook` |
//! | `webhook` | alert transitions POSTed to `alert_webhook_url`, Alertmanager's v2 JSON (hyper's client) |
//! | `sqlx` | `sqlx::Error` can be a cache loader's error |
//! | `jemalloc` | memory cleanup also purges jemalloc's arenas; usage reports jemalloc's figures |
//! | `sqlx` | `sqlx::Error` as a cache loader's error |
//!
//! With `default-features = false`, perf builds the cache, the memory manager, the task pool,
//! the query optimizer and the macros without sqlparser, figment and (on Linux) sysinfo (the
//! README gives the crate counts).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use perf::{PerformanceConfig, PerformanceOptimizer, Tier};
//!
//! let optimizer = PerformanceOptimizer::builder()
//!     .config(PerformanceConfig::default())
//!     .build()?
//!     .install()?;
//! optimizer.cache().set("greeting", "hello".to_string(), Tier::L2, None).await?;
//! // Reads hand out `Arc<T>`: an L1 hit copies a pointer, not the value.
//! let hit = perf::global().cache().get::<String>("greeting", Tier::L2).await?;
//! assert_eq!(hit.as_deref().map(String::as_str), Some("hello"));
//! # Ok::<_, perf::Error>(())
//! # })?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "config-load")]
#[cfg_attr(docsrs, doc(cfg(feature = "config-load")))]
pub use perf_core::LoadError;
#[doc(inline)]
pub use perf_core::memory::memory_context;
#[doc(inline)]
pub use perf_core::performance_context;
pub use perf_core::{
    BackgroundTasks, CacheStats, CleanupSkipped, ConfigError, EncodeError, Error, FieldError,
    HOT_FIELDS, InstallError, MultiLevelCache, OptimizerBuilder, PerformanceConfig,
    PerformanceOptimizer, RemoteError, RemoteTier, SharedFailure, StartError, TaskError, Tier,
    TierStats, alerts, cache, config, global, memory, metrics, monitor, optimizer, query, system,
    tasks,
};
#[doc(inline)]
pub use perf_macros::{cache_result, performance_monitor};

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[doc(inline)]
pub use perf_http as http;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use perf_redis as redis;

/// serde, which values cached in L2 and Redis implement: a crate whose only dependency is perf
/// derives it through this path.
///
/// ```
/// use perf::serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// #[serde(crate = "perf::serde")] // the derive's code names serde through perf
/// struct Ad { id: u64 }
/// # let _ = Ad { id: 1 }.clone();
/// ```
pub use serde;

/// Not a stable API: what the attribute macros' generated code calls.
#[doc(hidden)]
pub mod __private;

// The README shows the Redis tier too, so its examples compile with the `redis` feature
// (CI tests with --all-features).
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
