//! The get_or_load family: read through the tiers, else run one loader per key and store its
//! value; when the source fails or slows, share its failure, fall back on a stale value
//! (fail-safe), stop waiting at the timeouts, and reload hot keys before they expire.
//!
//! Every caller of a key, the one running the loader included, ends in one of the ways
//! [`Attempt`](super::attempt::Attempt) decides: the loaded value; the stale value (after a
//! failure, a timeout, or a soft timeout while the load goes on); or the failure, shared. Two
//! ways to run the loader:
//! - *inline* (`get_or_load`, `get_or_load_with`): the loader may borrow from its caller, so
//!   it runs in the caller's future. A load given up at a timeout is dropped (FusionCache's
//!   "background completion" off); the fail-safe throttle keeps the next calls off the source.
//! - *detached* (`get_or_load_detached`): a `'static` loader runs in a tokio task, so a load
//!   that outlives its caller's patience still fills the cache, and a refresh never makes a
//!   caller wait. Background refreshes are bounded by [`MAX_BACKGROUND_LOADS`].

use std::{future::Future, sync::Arc, time::Duration};

use tracing::Instrument;

use super::{
    Engine,
    target::{AllTiers, L1Only},
};
use crate::cache::{
    CacheValue, SharedValue, Tier,
    options::{ErrorSharing, LoadOptions, Loaded, LoaderError},
    stats::{Event, LoadEvent},
};
use crate::{Error, profiling::span_key};

/// Background loads (refreshes) one cache runs at once; a refresh that finds none free is
/// skipped, and the next read past the refresh point tries again.
pub(crate) const MAX_BACKGROUND_LOADS: usize = 64;

impl Engine {
    pub(crate) async fn get_or_load<T, E, F, Fut>(
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

    pub(crate) async fn get_or_load_with<T, E, F, Fut>(
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

    pub(crate) async fn get_or_load_detached<T, E, F, Fut>(
        self: &Arc<Self>,
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

    pub(crate) async fn get_or_load_l1<T, E, F, Fut>(
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

    pub(crate) async fn load_with<T, E, F, Fut>(
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

    pub(crate) async fn load_l1_with<T, E, F, Fut>(
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

    pub(crate) async fn load_detached_with<T, E, F, Fut>(
        self: &Arc<Self>,
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

    pub(crate) async fn load_l1_detached_with<T, E, F, Fut>(
        self: &Arc<Self>,
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

    pub(crate) fn get_or_load_local<T, E, F>(
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

    pub(crate) fn get_or_load_l1_local<T, E, F>(
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

    pub(crate) fn load_local_with<T, E, F>(
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

    pub(crate) fn load_l1_local_with<T, E, F>(
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

    pub(crate) async fn load_unkeyed<T, E, F, Fut>(
        &self,
        function: &'static str,
        loader: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.is_enabled() {
            return self.run_loader(function, loader).await.map(Arc::new);
        }
        let error = Error::UnkeyableArguments { function };
        self.load_uncached(function, error, loader).await
    }

    pub(crate) fn load_unkeyed_local<T, E>(
        &self,
        function: &'static str,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if !self.is_enabled() {
            return self.run_loader_local(function, loader).map(Arc::new);
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
        self.run_loader(key, loader).await.map(Arc::new)
    }

    pub(super) fn load_uncached_local<T, E>(
        &self,
        key: &str,
        error: &Error,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        self.refused_for_load(key, error);
        self.run_loader_local(key, loader).map(Arc::new)
    }

    pub(super) fn refused_for_load(&self, key: &str, error: &Error) {
        let shown: String = key.chars().take(64).collect();
        tracing::warn!(key = %shown, %error, "value not cacheable; loading uncached");
        self.counters.record(Tier::L1, Event::Refused);
    }

    /// Runs the loader for `key`, in a `perf.cache.load` span when profiling is on.
    pub(super) async fn run_loader<T, E, F, Fut>(&self, key: &str, loader: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.counters.record_load(LoadEvent::Run);
        let span = self.load_span(key);
        self.finished_loader(loader().instrument(span).await)
    }

    pub(super) fn run_loader_local<T, E>(
        &self,
        key: &str,
        loader: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.counters.record_load(LoadEvent::Run);
        let ran = self.load_span(key).in_scope(loader);
        self.finished_loader(ran)
    }

    fn load_span(&self, key: &str) -> tracing::Span {
        (self.profiling).span(|| tracing::info_span!("perf.cache.load", key = span_key(key)))
    }

    pub(super) fn finished_loader<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.counters.record_load(LoadEvent::Failed);
        }
        result
    }
}
