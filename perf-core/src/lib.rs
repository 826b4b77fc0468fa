//! perf-core: the engine of `perf`. No HTTP, no Redis, no proc macros; those crates build on
//! this one.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | [`PerformanceConfig`]: every knob, defaults, validation, TOML and `PERF_*` loading |
//! | [`cache`] | [`MultiLevelCache`]: L1 typed TTL tier, L2 compressed byte tier, [`RemoteTier`] |
//! | [`metrics`] | the metric catalogue and [`metrics::describe_all`] |
//! | [`monitor`] | operation timing behind `#[performance_monitor]`, [`monitor::performance_context`] |
//! | [`optimizer`] | [`PerformanceOptimizer`], [`global`], background loops |

pub mod alerts;
pub mod cache;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
#[doc(hidden)]
pub mod conformance;
mod error;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod optimizer;
pub mod query;
mod striped;
mod sync;
pub mod system;
pub mod tasks;

pub use cache::{CacheStats, MultiLevelCache, RemoteTier, Tier, TierStats};
pub use config::{ConfigError, FieldError, PerformanceConfig};
pub use error::{Error, InstallError, RemoteError};
pub use optimizer::{OptimizerBuilder, PerformanceOptimizer, global};
