//! The Redis tier of perf's multi-level cache, implementing [`perf_core::RemoteTier`].
//!
//! The tier itself arrives with the Redis work; until then this crate only names the contract
//! it will fulfil.

pub use perf_core::RemoteTier;
