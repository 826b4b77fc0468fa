//! Not a stable API: everything the code that `#[performance_monitor]` and `#[cache_result]`
//! generate calls, re-exported by the facade as `perf::__private`. Generated code names
//! nothing else of perf-core, so this file is the whole contract between the macros and the
//! engine: a change here is a change to what the macros may emit.
//!
//! The cache's fast path (near cache, fingerprint, key writing) is reached through
//! [`hit_for_call`] and [`hit_for_key`], keys are written by [`write_function_key`], and the
//! loads go through the `load*` functions, which take the caller's [`ErrorSharing`] so that a
//! `Clone` error reaches coalesced callers whole.

use std::{future::Future, sync::Arc};

pub use crate::{
    Error, MultiLevelCache,
    cache::{
        ErrorSharing, LoadOptions, LoaderError, Tier,
        fingerprint::CallArguments,
        memoized::{BodyRan, Memoized},
        with_key, write_function_key,
    },
    monitor::{CallSite, Status, Timing},
};
use crate::{
    PerformanceOptimizer,
    cache::{CacheValue, SharedValue},
    global,
};

// ----- where the generated code finds its optimizer -----

/// The cache of the installed (or default) optimizer.
#[inline]
pub fn global_cache() -> &'static MultiLevelCache {
    global().cache()
}

/// The cache of an `optimizer = ..` argument.
#[inline]
pub fn cache_of(optimizer: &PerformanceOptimizer) -> &MultiLevelCache {
    optimizer.cache()
}

// ----- #[performance_monitor] -----

/// Starts timing a call at a call site, against the global optimizer's monitor.
#[inline]
pub fn start_at(site: &'static CallSite) -> Timing {
    site.start(|| global().monitor())
}

/// Starts timing a call of operation `name` on the monitor of an `optimizer = ..` argument.
#[inline]
pub fn start_on(optimizer: &PerformanceOptimizer, name: &str) -> Timing {
    optimizer.monitor().start(name)
}

// ----- #[cache_result]: keys and hits -----

/// A copy of the L1 value of the call of `function` with `arguments`, counted as a hit;
/// repeats come from this thread's near cache. A miss is not counted: the load that follows
/// counts it.
#[inline(always)]
pub fn hit_for_call<T: CacheValue + Clone, A: CallArguments>(
    cache: &MultiLevelCache,
    function: &'static Memoized,
    arguments: &A,
) -> Option<T> {
    cache.engine().hit_for_call(function, arguments)
}

/// [`hit_for_call`] for a key written whole (a `key = ".."` template's, or a tagged key).
#[inline]
pub fn hit_for_key<T: CacheValue + Clone>(
    cache: &MultiLevelCache,
    function: &'static Memoized,
    key: &str,
) -> Option<T> {
    cache.engine().hit_for_key(function, key)
}

/// `key` under `tags` ([`MultiLevelCache::tagged_key`]).
pub async fn tagged_key(cache: &MultiLevelCache, key: &str, tags: &[&str]) -> String {
    cache.engine().tagged_key(key, tags).await
}

/// Drops one memoized call's result everywhere ([`MultiLevelCache::delete`]).
pub async fn invalidate(cache: &MultiLevelCache, key: &str) -> Result<bool, Error> {
    cache.delete(key).await
}

// ----- #[cache_result]: loads -----

/// [`MultiLevelCache::get_or_load_with`] with the caller's error sharing, giving the value.
pub async fn load<T, E, F, Fut>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: SharedValue,
    E: LoaderError,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let loaded = cache.engine().load_with(key, options, sharing, loader);
    loaded.await.map(|loaded| loaded.value)
}

/// [`load`] in L1 only, for values without serde.
pub async fn load_l1<T, E, F, Fut>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: CacheValue,
    E: LoaderError,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let loaded = cache.engine().load_l1_with(key, options, sharing, loader);
    loaded.await.map(|loaded| loaded.value)
}

/// [`MultiLevelCache::get_or_load_detached`] with the caller's error sharing.
pub async fn load_detached<T, E, F, Fut>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: SharedValue,
    E: LoaderError,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let loaded = cache
        .engine()
        .load_detached_with(key, options, sharing, loader);
    loaded.await.map(|loaded| loaded.value)
}

/// [`load_detached`] in L1 only.
pub async fn load_l1_detached<T, E, F, Fut>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: CacheValue,
    E: LoaderError,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let loaded = cache
        .engine()
        .load_l1_detached_with(key, options, sharing, loader);
    loaded.await.map(|loaded| loaded.value)
}

/// [`load`] for synchronous functions: the local tiers only.
pub fn load_local<T, E, F>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: SharedValue,
    E: LoaderError,
    F: FnOnce() -> Result<T, E>,
{
    let loaded = cache
        .engine()
        .load_local_with(key, options, sharing, loader);
    loaded.map(|loaded| loaded.value)
}

/// [`load_local`] in L1 only.
pub fn load_l1_local<T, E, F>(
    cache: &MultiLevelCache,
    key: &str,
    options: &LoadOptions,
    sharing: ErrorSharing<E>,
    loader: F,
) -> Result<Arc<T>, E>
where
    T: CacheValue,
    E: LoaderError,
    F: FnOnce() -> Result<T, E>,
{
    let loaded = cache
        .engine()
        .load_l1_local_with(key, options, sharing, loader);
    loaded.map(|loaded| loaded.value)
}

/// A call of `function` whose arguments could not be written into a key: its loader runs
/// uncached, refused and counted as any uncacheable load.
pub async fn load_unkeyed<T, E, F, Fut>(
    cache: &MultiLevelCache,
    function: &'static str,
    loader: F,
) -> Result<Arc<T>, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    cache.engine().load_unkeyed(function, loader).await
}

/// [`load_unkeyed`] for synchronous functions.
pub fn load_unkeyed_local<T, E>(
    cache: &MultiLevelCache,
    function: &'static str,
    loader: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E> {
    cache.engine().load_unkeyed_local(function, loader)
}
