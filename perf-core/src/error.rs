//! perf-core's errors: [`Error`] for everything the cache and the optimizer refuse, with
//! [`InstallError`] as the reason of [`Error::Install`]. Kept apart, because each is what one
//! call returns and its callers match on it: [`ConfigError`] (loading and validating the
//! configuration), [`TaskError`](crate::tasks::TaskError) (a task not accepted) and
//! [`CleanupSkipped`](crate::memory::CleanupSkipped) (why a memory cleanup did not run). All
//! are re-exported at the crate root, with the opaque wrappers [`EncodeError`] and
//! [`LoadError`](crate::config::LoadError), whose sources are the serializer's and the
//! configuration loader's own errors.

use std::{
    any::{Any, TypeId},
    fmt,
    sync::Arc,
    time::Duration,
};

use crate::config::ConfigError;
#[cfg(all(doc, feature = "config-load"))]
use crate::config::LoadError;

/// A remote tier's failure, as the tier reports it.
pub type RemoteError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in perf-core.
///
/// Cache reads never fail for a cache reason (an undecodable or mistyped entry is a counted
/// miss); what is refused here is bad input and failed writes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cache key longer than `max_key_bytes`.
    #[error("cache key is {len} bytes, over the limit max_key_bytes = {limit}")]
    KeyTooLong {
        /// The key's length, in bytes of UTF-8.
        len: usize,
        /// `max_key_bytes`.
        limit: usize,
    },
    /// An encoded value larger than `max_value_bytes` (or than one L2 shard can hold).
    #[error("cache value is {len} bytes encoded, over the limit {limit_name} = {limit}")]
    ValueTooLarge {
        /// The size that was over: the serialized payload for `max_value_bytes`; the whole L2
        /// entry (key, encoded value and overhead) for a shard.
        len: usize,
        /// The limit it was over, in bytes.
        limit: usize,
        /// Which limit: `"max_value_bytes"` or `"L2 shard capacity"` (raise `l2_max_bytes`).
        limit_name: &'static str,
    },
    /// A function's arguments could not be written into a key (their `Serialize` or
    /// `Display` failed): such a call runs uncached.
    #[error("the arguments of {function} could not be written into a cache key")]
    UnkeyableArguments {
        /// The function's path (`module_path!()` and its name).
        function: &'static str,
    },
    /// A TTL of zero: the entry would be expired before it is stored.
    #[error("cache TTL must be greater than zero")]
    ZeroTtl,
    /// A TTL too large to represent as an instant.
    #[error("cache TTL {0:?} is too large")]
    TtlOverflow(Duration),
    /// A tier name other than `l1`, `l2` or `redis`.
    #[error("unknown cache tier {0:?}: expected \"l1\", \"l2\" or \"redis\"")]
    UnknownTier(String),
    /// The value could not be serialized for L2 or the remote tier.
    #[error("cache value could not be encoded")]
    Encode(#[source] EncodeError),
    /// The value was stored locally but the remote tier refused or failed the write.
    #[error("remote cache tier failed")]
    Remote(#[source] RemoteError),
    /// The value was stored locally but the remote tier failed the write; the tier keeps the
    /// key and, once it is reachable again, removes the older value it holds and tells every
    /// instance to drop theirs (see
    /// [`RemoteTier::replays_failed_changes`](crate::cache::RemoteTier::replays_failed_changes)).
    #[error("remote cache tier failed; the change is queued for when it is back")]
    RemoteQueued(#[source] RemoteError),
    /// A load's callers stopped waiting at its hard timeout, with no stale value to serve.
    #[error("the loader gave no value within its hard timeout of {after:?}")]
    LoaderTimeout {
        /// The hard timeout in force: the call's
        /// [`hard_timeout`](crate::cache::LoadOptions::hard_timeout), else `cache_hard_timeout`.
        after: Duration,
    },
    /// The load this call was coalesced with failed; every caller of that load gets its
    /// failure, and the loader ran once.
    #[error("the load this call waited on failed: {0}")]
    LoaderFailed(SharedFailure),
    /// [`LoadOptions`](crate::cache::LoadOptions) that cannot work together.
    #[error("invalid load options: {0}")]
    InvalidLoadOptions(String),

    /// Encryption was asked for (`#[cache_result(encrypt)]`, [`LoadOptions::encrypt`]) on a
    /// cache without keys: nothing was cached.
    ///
    /// [`LoadOptions::encrypt`]: crate::cache::LoadOptions::encrypt
    #[error("encryption was asked for, but cache_encryption_keys holds no key")]
    NoEncryptionKeys,
    /// A pool watched under a new name when as many as the limit are watched already.
    #[error("pool {name:?} not watched: at most {limit} connection pools are")]
    TooManyPools {
        /// The name refused.
        name: String,
        /// How many pools one optimizer watches at most.
        limit: usize,
    },
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `install()` was refused.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The background loops could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Why a value could not be serialized for L2 or the remote tier: its message is the
/// serializer's, and so is its [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct EncodeError(rmp_serde::encode::Error);

impl EncodeError {
    /// Not `From`: the serializer stays out of the public API.
    pub(crate) fn new(error: rmp_serde::encode::Error) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Why [`PerformanceOptimizer::install`](crate::PerformanceOptimizer::install) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// `install()` already ran in this process.
    #[error("a PerformanceOptimizer is already installed in this process")]
    AlreadyInstalled,
    /// Annotated code ran before `install()`, so the default instance is already in use.
    #[error(
        "the default PerformanceOptimizer was already in use before install(); \
         call install() first thing in main, before any monitored or cached code runs"
    )]
    DefaultInUse,
    /// `install()` starts background loops and needs a tokio runtime.
    #[error("install() must be called from within a tokio runtime")]
    NoRuntime,
    /// The configuration's `metrics_prefix` could not be set.
    #[error(transparent)]
    MetricsPrefix(#[from] crate::metrics::PrefixError),
}

/// Why [`PerformanceOptimizer::start`](crate::PerformanceOptimizer::start) (or `install()`)
/// did not start the background loops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `start()` was called outside a tokio runtime.
    #[error(
        "the background loops need a tokio runtime: call start() from within one, \
         or start_on(handle)"
    )]
    NoRuntime,
    /// The runtime was built without timers, which the loops need.
    #[error(
        "the tokio runtime has timers disabled, which the background loops need: \
         build it with enable_time() or enable_all()"
    )]
    TimersDisabled,
    /// This optimizer's loops run already, from an earlier start that is still held.
    #[error(
        "the background loops of this optimizer are already running; \
         stop or drop their BackgroundTasks first"
    )]
    AlreadyRunning,
}

/// So that loaders returning `std::io::Result` can use the get_or_load family, whose callers
/// may receive the cache's own failures (a hard timeout, a shared failure).
impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match error {
            Error::LoaderTimeout { .. } => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// With feature `sqlx`: so that `sqlx::Error` can be a cache loader's error. The cache's own
/// failures arrive as `sqlx::Error::Io`, of kind `TimedOut` for a hard timeout.
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
impl From<Error> for sqlx_core::Error {
    fn from(error: Error) -> Self {
        sqlx_core::Error::Io(error.into())
    }
}

/// So that loaders whose errors are plain messages can use the get_or_load family and
/// `#[cache_result]`: the cache's own failures arrive as their message.
impl From<Error> for String {
    fn from(error: Error) -> Self {
        error.to_string()
    }
}

/// The failure of a load that several callers were waiting on, as each of them receives it
/// (inside [`Error::LoaderFailed`]): the loader's error message, and the error itself where it
/// was shared by value (`#[cache_result]` shares errors that are `Clone`).
#[derive(Clone)]
pub struct SharedFailure {
    message: Arc<str>,
    error: Option<Arc<dyn Any + Send + Sync>>,
    /// The loader's error type: a failure reaches only callers whose loaders have the same
    /// one (other callers, of another function under the same key, load for themselves).
    error_type: TypeId,
}

impl SharedFailure {
    pub(crate) fn new<E: 'static>(
        message: String,
        error: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            error,
            error_type: TypeId::of::<E>(),
        }
    }

    /// Whether this failure is of loaders with error type `E`.
    pub(crate) fn is_for<E: 'static>(&self) -> bool {
        self.error_type == TypeId::of::<E>()
    }

    /// The loader error's `Display` text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The loader's error itself, if it was shared by value and is an `E`.
    pub fn downcast_ref<E: 'static>(&self) -> Option<&E> {
        self.error.as_ref()?.downcast_ref::<E>()
    }
}

impl fmt::Debug for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFailure")
            .field("message", &self.message)
            .field("by_value", &self.error.is_some())
            .finish()
    }
}

impl fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::{MultiLevelCache, PerformanceConfig, Tier};

    /// A value whose `Serialize` always fails.
    #[derive(Clone, serde::Deserialize)]
    struct Unserializable;

    impl serde::Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused by the value"))
        }
    }

    #[tokio::test]
    async fn an_encoding_failure_keeps_the_serializer_error_as_its_source() {
        let cache = MultiLevelCache::new(&PerformanceConfig::default()).expect("valid");
        let error = cache
            .set("k", Unserializable, Tier::L2, None)
            .await
            .expect_err("cannot be encoded");
        let Error::Encode(encode) = &error else {
            panic!("expected an encoding error, got {error:?}");
        };
        assert!(
            encode.to_string().contains("refused by the value"),
            "{encode}"
        );
        let source = error.source().expect("the encoding error");
        assert!(source.is::<EncodeError>());
        let inner = encode.source().expect("the serializer's error");
        assert!(inner.is::<rmp_serde::encode::Error>(), "{inner:?}");
    }

    #[cfg(feature = "config-load")]
    #[test]
    fn a_config_error_in_error_keeps_its_source() {
        let config = PerformanceConfig::from_toml_str("max_workers = \"many\"").expect_err("bad");
        let error = Error::from(config);
        // Transparent: the configuration error's own source comes through.
        assert!(
            error
                .source()
                .is_some_and(|source| source.is::<crate::config::LoadError>())
        );
    }
}
