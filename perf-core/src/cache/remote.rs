//! The contract of a shared tier below L2 (perf-redis implements it over Redis).

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::error::RemoteError;

/// A boxed future, so that [`RemoteTier`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tier shared by every instance of a service, holding values in the encoding L2 uses.
///
/// Implementations bound every call with a timeout. The cache turns a failed read into a miss
/// and a failed write into a counted error; nothing a remote tier returns can panic the caller.
pub trait RemoteTier: Send + Sync + fmt::Debug + 'static {
    /// The encoded bytes at `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>>;

    /// Stores encoded bytes at `key` for `ttl`.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Removes every key whose name starts with `prefix`; returns how many were removed.
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>>;

    /// Removes every key of this cache (its namespace only).
    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>>;

    /// The encoded bytes at each key, in order, in one round trip where the tier can. The
    /// default asks key by key.
    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, RemoteError>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await?);
            }
            Ok(values)
        })
    }

    /// The namespace this tier keeps its keys in, which the cache binds into every sealed
    /// value (`cache_encryption_keys`), so that a value copied to another namespace does not
    /// open. Default: none (`""`).
    fn namespace(&self) -> &str {
        ""
    }

    /// The bytes the tier's store uses, for `cache_size_bytes{tier="redis"}`, or `None` where
    /// the tier cannot tell (the default). The cache asks at most every 5 seconds, in a task
    /// of its own, under a 2-second timeout; implementations should answer without delay when
    /// they know the store to be unreachable.
    fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Whether this tier keeps a change it could not apply (a failed `set`, `delete`,
    /// `invalidate_prefix` or `clear`) and replays it, as a removal announced to every
    /// instance, once it is reachable again; until then it reads such keys as misses. The
    /// cache then reports a failed removal as done and a failed write as
    /// [`Error::RemoteQueued`](crate::Error::RemoteQueued). Default `false`: failures are
    /// returned as [`Error::Remote`](crate::Error::Remote).
    fn replays_failed_changes(&self) -> bool {
        false
    }

    /// Called once by the cache this tier serves: deliver other instances' changes to `sink`
    /// so that the cache drops its stale local copies. Each time the tier starts listening,
    /// the first time included, it sends [`Invalidation::Resync`]: copies made before then
    /// may have missed a change. Tiers without a way to hear of other instances' writes keep
    /// the default, which drops the sink.
    fn subscribe(&self, sink: InvalidationSink) {
        drop(sink);
    }
}

/// What another instance changed in the shared tier.
///
/// More kinds may come. Code that forwards invalidations and meets one it does not know can
/// send [`Resync`](Self::Resync) in its place: the receiving cache then drops every local copy
/// of a shared value, which is always safe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// These keys were set or deleted.
    Keys(Vec<String>),
    /// Every key starting with this prefix was removed.
    Prefix(String),
    /// The shared tier was cleared.
    All,
    /// Changes may have been missed (the subscription dropped): every local copy of a shared
    /// value is suspect.
    Resync,
}

/// Where a remote tier delivers [`Invalidation`]s.
pub type InvalidationSink = Arc<dyn Fn(Invalidation) + Send + Sync>;
