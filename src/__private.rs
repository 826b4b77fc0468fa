//! Not a stable API: what the attribute macros' generated code calls. Generated code names
//! nothing outside this module: perf-core's side of the contract is
//! `perf_core::macro_support`, re-exported here whole; the rest are the facade's own helpers
//! (conversions, and the traits behind the macros' type errors).

use std::sync::Arc;

pub use perf_core::macro_support::*;
pub use tracing;

/// A cached value handed back by value.
#[inline]
pub fn unshare<T: Clone>(value: Arc<T>) -> T {
    Arc::unwrap_or_clone(value)
}

/// The loader's "error" for a `None` that is not to be cached, and for the cache's own
/// failures (a timeout, another call's failure) of functions that return an `Option` or a
/// plain value.
#[derive(Debug)]
pub struct NotCached;

impl std::fmt::Display for NotCached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no value to cache")
    }
}

impl From<perf_core::Error> for NotCached {
    fn from(_: perf_core::Error) -> Self {
        NotCached
    }
}

/// The loader "error" of a function that returns a plain value: it has none.
#[derive(Debug)]
pub enum Unfailing {}

impl std::fmt::Display for Unfailing {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// Unreachable for the calls that use it, which run without a hard timeout, and receive
/// only failures of loaders with this same (uninhabited) error type.
impl From<perf_core::Error> for Unfailing {
    fn from(error: perf_core::Error) -> Self {
        panic!("a #[cache_result] function returning a plain value met a cache failure: {error}")
    }
}

/// The parts of a function's return type, so that generated code can name a `Result`'s
/// error type even behind an alias (`io::Result<T>`).
pub trait ReturnParts {
    type Err;
}

impl<T, E> ReturnParts for Result<T, E> {
    type Err = E;
}

/// Picks how a failed call's error reaches the calls that waited on it: a clone where the
/// error is `Clone` (through [`ShareByClone`]), else its message (through [`ShareByMessage`]).
/// Generated code calls `(&Sharing::<E>::new()).pick()` with both traits in scope.
#[derive(Debug)]
pub struct Sharing<E>(std::marker::PhantomData<E>);

impl<E> Sharing<E> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub trait ShareByClone<E> {
    fn pick(&self) -> ErrorSharing<E>;
}

impl<E: Clone + Send + Sync + 'static> ShareByClone<E> for Sharing<E> {
    fn pick(&self) -> ErrorSharing<E> {
        ErrorSharing::by_clone()
    }
}

pub trait ShareByMessage<E> {
    fn pick(&self) -> ErrorSharing<E>;
}

impl<E> ShareByMessage<E> for &Sharing<E> {
    fn pick(&self) -> ErrorSharing<E> {
        ErrorSharing::by_message()
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached in L1",
    label = "this type must be Clone + Send + Sync + 'static",
    note = "L1 hands each caller its own copy of the cached value"
)]
pub trait CacheableInL1: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> CacheableInL1 for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached in L2 or Redis",
    label = "this type must be Clone + Send + Sync + 'static and serde Serialize + DeserializeOwned",
    note = "L2 and Redis hold encoded bytes; cache_type = \"l1\" needs no serde"
)]
pub trait CacheableShared:
    Clone + Send + Sync + 'static + serde::Serialize + serde::de::DeserializeOwned
{
}
impl<T: Clone + Send + Sync + 'static + serde::Serialize + serde::de::DeserializeOwned>
    CacheableShared for T
{
}

#[diagnostic::on_unimplemented(
    message = "argument type `{Self}` cannot be part of a cache key",
    label = "this argument must implement serde::Serialize",
    note = "leave it out of the key with `skip(name)`, or write the key with `key = \"..\"`"
)]
pub trait KeyArgument: serde::Serialize {}
impl<T: serde::Serialize + ?Sized> KeyArgument for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error of a #[cache_result] function",
    label = "needs `From<perf::Error>` (for timeouts and shared failures), `Display`, `Send`, `Sync`",
    note = "add a variant such as `#[error(transparent)] Cache(#[from] perf::Error)` to your error type; sqlx::Error works with perf's `sqlx` feature"
)]
pub trait CacheableError: perf_core::cache::LoaderError {}
impl<E: perf_core::cache::LoaderError> CacheableError for E {}

pub fn assert_cacheable_error<E: CacheableError>() {}
pub fn assert_cacheable_in_l1<T: CacheableInL1>() {}
pub fn assert_cacheable_shared<T: CacheableShared>() {}
pub fn assert_key_argument<T: KeyArgument + ?Sized>() {}
