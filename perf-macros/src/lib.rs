//! Attribute macros for perf. `#[performance_monitor]` and `#[cache_result]` arrive with the
//! monitoring work; this crate is a member of the workspace so that the facade can pin it.
