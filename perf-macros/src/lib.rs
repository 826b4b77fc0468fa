//! Attribute macros for perf, re-exported as `perf::performance_monitor` and
//! `perf::cache_result`. Generated code calls `::perf::__private`, which is not a stable API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attr;
mod expand;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Times every call of a function as an operation: `processing_time_seconds{operation}`,
/// `async_operations_total{operation,status}` (`success`, `error` for an `Err` return, `panic`,
/// `cancelled` for an async call dropped before it finished), and in-process statistics.
///
/// `#[performance_monitor]` names the operation after the function's path;
/// `#[performance_monitor("ads.fetch")]` names it. `optimizer = <expr>` records into a given
/// `PerformanceOptimizer` instead of the global one; `crate = "path"` relocates `perf`.
///
/// With `#[cache_result]` on the same function, in either order, it times every call, hits
/// included.
///
/// ```
/// use perf::performance_monitor;
///
/// #[performance_monitor("ads.parse")]
/// fn parse_id(text: &str) -> Result<u64, std::num::ParseIntError> {
///     text.parse()
/// }
///
/// #[performance_monitor("ads.fetch")]
/// async fn fetch(id: u64) -> String {
///     format!("ad {id}")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(parse_id("42"), Ok(42));
/// assert!(parse_id("forty-two").is_err()); // counted with status `error`
/// assert_eq!(fetch(7).await, "ad 7");
///
/// let monitor = perf::global().monitor();
/// let parse = monitor.operation_snapshot("ads.parse").expect("it ran");
/// assert_eq!((parse.count, parse.errors), (2, 1));
/// assert_eq!(monitor.operation_snapshot("ads.fetch").map(|s| s.count), Some(1));
/// # }
/// ```
#[proc_macro_attribute]
pub fn performance_monitor(args: TokenStream, item: TokenStream) -> TokenStream {
    let raw_args = proc_macro2::TokenStream::from(args.clone());
    let args = parse_macro_input!(args as attr::MonitorArgs);
    let function = match attr::function("performance_monitor", item.into()) {
        Ok(function) => function,
        Err(error) => return error.into_compile_error().into(),
    };
    // Above `#[cache_result]`, the monitor would wrap only the load: it steps below it
    // instead, so that it times every call, hits included, in either order.
    if let Some(reordered) = expand::monitor_below_cache(&args, raw_args, &function) {
        return reordered.into();
    }
    expand::performance_monitor(args, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Caches a function's results, keyed by its arguments, through the multi-level cache.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// use perf::cache_result;
///
/// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Ad {
///     id: u64,
///     title: String,
/// }
///
/// static LOADS: AtomicU32 = AtomicU32::new(0);
///
/// // Kept in L1 and L2 for ten minutes; only `Ok` values are cached.
/// #[cache_result(ttl = "10m", cache_type = "l2")]
/// async fn ad(id: u64) -> Result<Ad, std::io::Error> {
///     LOADS.fetch_add(1, Ordering::SeqCst);
///     Ok(Ad { id, title: format!("ad {id}") })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let first = ad(7).await?;
/// assert_eq!(ad(7).await?, first, "a hit: the body did not run again");
/// assert_eq!(LOADS.load(Ordering::SeqCst), 1);
///
/// // The companion module drops one call's result, in every tier and on every instance.
/// assert!(ad::invalidate(7).await?);
/// ad(7).await?;
/// assert_eq!(LOADS.load(Ordering::SeqCst), 2);
/// # Ok(())
/// # }
/// ```
///
/// - `ttl`: seconds or a duration string (`"30m"`); default the configuration's `cache_ttl`.
/// - `cache_type`: `"l1"` (default; values need `Clone + Send + Sync + 'static`), `"l2"` or
///   `"redis"` (values also need serde; `"redis"` only on async fns).
/// - `key = "user:{user_id}"`: a template over argument names; default the function's path
///   plus a stable encoding of its arguments (which then need `Serialize`). A method's key
///   also carries its type's name (`type_name::<Self>()`), so two `impl`s in one module never
///   share results; `self` itself is never part of the key: a result that depends on `self`'s
///   state needs that state as an argument or in a `key` template. (An associated function
///   without `self` is known to be a method only when its signature names `Self`; give such
///   functions of two types in one module a `key`.) `skip(pool, ..)` leaves out arguments.
/// - `tags = ["ads", "campaign:{campaign_id}"]`: templates over argument names; every call
///   is dropped, on every instance, by `cache.invalidate_tag` of any of its tags. Async fns
///   only; each call then looks up its tags' generations (L1 hits, bar the first after a
///   change) and skips the per-argument near cache.
/// - A `Result` caches only `Ok` values and an `Option` only `Some`, unless `cache_err` or
///   `cache_none`.
/// - `encrypt` (`cache_type` `"l2"` or `"redis"`): the value is encrypted in L2 and Redis
///   with the first of `cache_encryption_keys`, whatever `cache_value_protection` says; on a
///   cache without keys, calls run their body uncached (logging
///   `perf::Error::NoEncryptionKeys`), as with a key over `max_key_bytes`.
/// - When the source fails or slows: `fail_safe = "1h"` (serve the last value that long past
///   its TTL when a reload fails), `fail_safe_throttle = "30s"`, `timeout = "100ms"` (a stale
///   value after that long), `hard_timeout = "2s"` (no value after that long: the error type
///   receives `perf::Error::LoaderTimeout`; not on fns returning a plain value),
///   `refresh_ahead = 0.8` (reload after 80% of the TTL while callers keep the value),
///   `jitter = 0.1`, `failure_ttl = "5s"`. Unset ones take the configuration's defaults.
///   Timeouts need an async fn. With a timeout or refresh-ahead, an async fn whose arguments
///   are all owned runs its body in a tokio task (so it must be `Send`), which lets a slow load
///   finish and fill the cache after its caller stopped waiting.
/// - A `Result`'s error type needs `From<perf::Error>` and `Display` (a failed call's error
///   reaches the calls that waited on it: itself when it is `Clone`, else its message).
/// - Beside a free, non-generic function `f`, a module `f` holds `f::invalidate(args..)`
///   (when `f` uses the global optimizer), `f::invalidate_in(&cache, args..)` and, without
///   tags, `f::key(args..)`: they drop one call's result in every tier and on every instance,
///   taking the arguments the key is made of (the non-skipped ones, or those the `key`
///   template and tags name). Methods get none; a module or type named like the function in
///   the same scope clashes with it.
/// - `optimizer = <expr>` uses that optimizer's cache; `crate = "path"` relocates `perf`.
///
/// Async calls go through the cache's coalesced load: concurrent misses on one key run the
/// body once, and share its outcome.
#[proc_macro_attribute]
pub fn cache_result(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(args as attr::CacheArgs);
    let function = match attr::function("cache_result", item.into()) {
        Ok(function) => function,
        Err(error) => return error.into_compile_error().into(),
    };
    expand::cache_result(args, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
