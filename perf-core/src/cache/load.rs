//! The get_or_load family: read through the tiers, else run one loader per key and store its
//! value; when the source fails or slows, share its failure, fall back on a stale value
//! (fail-safe), stop waiting at the timeouts, and reload hot keys before they expire.
//!
//! Every caller of a key, the one running the loader included, ends in one of the ways
//! [`Attempt`] decides: the loaded value; the stale value (after a failure, a timeout, or a
//! soft timeout while the load goes on); or the failure, shared. Two ways to run the loader:
//! - *inline* (`get_or_load`, `get_or_load_with`): the loader may borrow from its caller, so
//!   it runs in the caller's future. A load given up at a timeout is dropped (FusionCache's
//!   "background completion" off); the fail-safe throttle keeps the next calls off the source.
//! - *detached* (`get_or_load_detached`): a `'static` loader runs in a tokio task, so a load
//!   that outlives its caller's patience still fills the cache, and a refresh never makes a
//!   caller wait. Background refreshes are bounded by [`MAX_BACKGROUND_LOADS`].

use std::{fmt, future::Future, sync::Arc, time::Duration};

use super::{
    CacheValue, MultiLevelCache, SharedValue, Tier,
    options::{ErrorSharing, LoadOptions, Loaded},
    stats::{Event, LoadEvent},
    target::{AllTiers, L1Only},
};
use crate::Error;

/// Background loads (refreshes) one cache runs at once; a refresh that finds none free is
/// skipped, and the next read past the refresh point tries again.
pub(crate) const MAX_BACKGROUND_LOADS: usize = 64;

/// What a loader's error must allow: callers may receive the cache's own failures (a hard
/// timeout, another caller's failure) converted with `From`, and a failure's message is shared.
/// `std::io::Error`, `anyhow::Error`, `Box<dyn Error + Send + Sync>` and [`Error`] qualify;
/// an application's error enum gets a `#[from] perf::Error` variant.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cache loader's error",
    label = "needs `From<perf::Error>` (for timeouts and shared failures), `Display`, `Send`, `Sync`",
    note = "add a variant such as `#[error(transparent)] Cache(#[from] perf::Error)` to your error type"
)]
pub trait LoaderError: From<Error> + fmt::Display + Send + Sync + 'static {}
impl<E: From<Error> + fmt::Display + Send + Sync + 'static> LoaderError for E {}
impl MultiLevelCache {
    /// The value at `key` (down to `tier`), or else the loader's value, stored down to `tier`
    /// for `ttl` (default `cache_ttl`), with the configuration's fail-safe, timeout, refresh
    /// and jitter settings.
    ///
    /// Concurrent misses on one key in this process run one loader, and every caller gets its
    /// outcome: its value, or its failure (the caller whose loader it was gets its own error;
    /// the others get [`Error::LoaderFailed`] carrying its message, converted with `From`).
    /// Caching never fails the call: a key, TTL or value the cache refuses is loaded and
    /// returned uncached, counted and logged. See [`get_or_load_with`](Self::get_or_load_with)
    /// for per-call settings and whether the value was stale.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let options = LoadOptions::new(tier).ttl_or(ttl);
        self.load_with(key, &options, ErrorSharing::by_message(), loader)
            .await
            .map(|loaded| loaded.value)
    }

    /// [`get_or_load`](Self::get_or_load) with per-call [`LoadOptions`], telling whether the
    /// value is fresh or stale (fail-safe). The loader runs in the caller's future, so it may
    /// borrow; a load given up at a timeout is dropped, and a refresh-ahead is run by the
    /// first caller past the refresh point (the others keep the current value). Options that
    /// cannot work together are refused with [`Error::InvalidLoadOptions`].
    pub async fn get_or_load_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_with(key, options, ErrorSharing::by_message(), loader)
            .await
    }

    /// [`get_or_load_with`](Self::get_or_load_with) with a loader that runs in a tokio task:
    /// a load that passes the soft timeout goes on and fills the cache when it finishes (until
    /// the hard timeout, where it is dropped), and refresh-ahead reloads in the background
    /// while every caller keeps the current value.
    pub async fn get_or_load_detached<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.load_detached_with(key, options, ErrorSharing::by_message(), loader)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) in L1 only, for values without serde.
    pub async fn get_or_load_l1<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let options = LoadOptions::new(Tier::L1).ttl_or(ttl);
        self.load_l1_with(key, &options, ErrorSharing::by_message(), loader)
            .await
            .map(|loaded| loaded.value)
    }

    /// For `#[cache_result]`: [`get_or_load_with`](Self::get_or_load_with) with a choice of
    /// how errors are shared.
    #[doc(hidden)]
    pub async fn load_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tier = self.effective(options.tier_of());
        self.load_inline(key, options, sharing, loader, AllTiers(tier))
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_with`](Self::get_or_load_with) in L1 only.
    #[doc(hidden)]
    pub async fn load_l1_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_inline(key, options, sharing, loader, L1Only)
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_detached`](Self::get_or_load_detached) with a
    /// choice of how errors are shared.
    #[doc(hidden)]
    pub async fn load_detached_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let tier = self.effective(options.tier_of());
        self.load_detached(key, options, sharing, loader, AllTiers(tier))
            .await
    }

    /// For `#[cache_result]`: [`get_or_load_detached`](Self::get_or_load_detached) in L1 only.
    #[doc(hidden)]
    pub async fn load_l1_detached_with<T, E, F, Fut>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.load_detached(key, options, sharing, loader, L1Only)
            .await
    }

    // ----- synchronous loads -----

    /// [`get_or_load`](Self::get_or_load) for synchronous code: L1, then L2 when `tier`
    /// reaches it; the remote tier is not used. Concurrent misses on one key run one loader,
    /// the other callers blocking until it finishes and sharing its outcome; a caller that
    /// finds an async `get_or_load` loading the key runs its own loader rather than block
    /// that one's runtime. Fail-safe and failure caching apply; timeouts do not (a
    /// synchronous loader cannot be stopped), and a refresh is run by the first caller past
    /// the refresh point.
    pub fn get_or_load_local<T, E, F>(
        &self,
        key: &str,
        tier: Tier,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let options = LoadOptions::new(tier).ttl_or(ttl);
        self.load_local_with(key, &options, ErrorSharing::by_message(), loader)
            .map(|loaded| loaded.value)
    }

    /// [`get_or_load_local`](Self::get_or_load_local) in L1 only, for values without serde.
    pub fn get_or_load_l1_local<T, E, F>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let options = LoadOptions::new(Tier::L1).ttl_or(ttl);
        self.load_l1_local_with(key, &options, ErrorSharing::by_message(), loader)
            .map(|loaded| loaded.value)
    }

    /// For `#[cache_result]` on synchronous fns.
    #[doc(hidden)]
    pub fn load_local_with<T, E, F>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: SharedValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        let tier = options.tier_of().min(Tier::L2);
        self.load_blocking(key, options, sharing, loader, AllTiers(tier))
    }

    /// For `#[cache_result]` on synchronous fns, in L1 only.
    #[doc(hidden)]
    pub fn load_l1_local_with<T, E, F>(
        &self,
        key: &str,
        options: &LoadOptions,
        sharing: ErrorSharing<E>,
        loader: F,
    ) -> Result<Loaded<T>, E>
    where
        T: CacheValue,
        E: LoaderError,
        F: FnOnce() -> Result<T, E>,
    {
        self.load_blocking(key, options, sharing, loader, L1Only)
    }

    // ----- loads that bypass the cache -----

    /// For `#[cache_result]`: a call of `function` whose arguments could not be written into
    /// a key runs its loader uncached, refused and counted as any uncacheable load.
    #[doc(hidden)]
    pub async fn load_unkeyed<T, E, F, Fut>(
        &self,
        function: &'static str,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.is_enabled() {
            return self.run_loader(loader).await.map(Arc::new);
        }
        let error = Error::UnkeyableArguments { function };
        self.load_uncached(function, error, loader).await
    }

    /// [`load_unkeyed`](Self::load_unkeyed) for synchronous loaders.
    #[doc(hidden)]
    pub fn load_unkeyed_local<T, E>(
        &self,
        function: &'static str,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if !self.is_enabled() {
            return self.run_loader_local(loader).map(Arc::new);
        }
        let error = Error::UnkeyableArguments { function };
        self.load_uncached_local(function, &error, loader)
    }

    pub(super) async fn load_uncached<T, E, F, Fut>(
        &self,
        key: &str,
        error: Error,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.refused_for_load(key, &error);
        self.run_loader(loader).await.map(Arc::new)
    }

    pub(super) fn load_uncached_local<T, E>(
        &self,
        key: &str,
        error: &Error,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        self.refused_for_load(key, error);
        self.run_loader_local(loader).map(Arc::new)
    }

    pub(super) fn refused_for_load(&self, key: &str, error: &Error) {
        let shown: String = key.chars().take(64).collect();
        tracing::warn!(key = %shown, %error, "value not cacheable; loading uncached");
        self.inner.counters.record(Tier::L1, Event::Refused);
    }

    pub(super) async fn run_loader<T, E, F, Fut>(&self, loader: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.counters.record_load(LoadEvent::Run);
        self.finished_loader(loader().await)
    }

    pub(super) fn run_loader_local<T, E>(
        &self,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.inner.counters.record_load(LoadEvent::Run);
        self.finished_loader(loader())
    }

    pub(super) fn finished_loader<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.inner.counters.record_load(LoadEvent::Failed);
        }
        result
    }
}
