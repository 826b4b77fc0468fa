//! Not a stable API: what the attribute macros' generated code calls.

use std::sync::Arc;

pub use perf_core::{self, cache::with_key, monitor};
pub use tracing;

/// A cached value handed back by value.
#[inline]
pub fn unshare<T: Clone>(value: Arc<T>) -> T {
    Arc::unwrap_or_clone(value)
}

/// The loader's "error" for a `None` that is not to be cached.
#[derive(Debug)]
pub struct NotCached;

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

pub fn assert_cacheable_in_l1<T: CacheableInL1>() {}
pub fn assert_cacheable_shared<T: CacheableShared>() {}
pub fn assert_key_argument<T: KeyArgument + ?Sized>() {}
