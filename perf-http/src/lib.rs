//! The admin HTTP API of perf and its `/metrics` endpoint.
//!
//! The router arrives with the admin API work; until then this crate only re-exports the
//! metric catalogue it will serve.

pub use perf_core::metrics::CATALOGUE;
