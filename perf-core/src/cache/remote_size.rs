//! `cache_size_bytes{tier="redis"}`: the remote tier's bytes, asked for in a task of its own
//! at most every [`SAMPLE_EVERY`] when the cache publishes its metrics, under a timeout, so
//! that no read or write waits for it and a remote tier that does not answer costs nothing
//! but a missing sample.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;

use super::RemoteTier;

/// How often the remote tier is asked for its size.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long one sample may take before it is given up.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// [`Shared::bytes`] before the first sample.
const NONE_YET: u64 = u64::MAX;

/// The latest size the remote tier reported.
#[derive(Debug, Default)]
pub(crate) struct RemoteSize {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    bytes: AtomicU64,
    /// When the latest sample started (tokio's clock, which tests pause).
    started: Mutex<Option<tokio::time::Instant>>,
    /// A sample is under way.
    sampling: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            bytes: AtomicU64::new(NONE_YET),
            started: Mutex::new(None),
            sampling: AtomicBool::new(false),
        }
    }
}

/// Marks the sample over however its task ends: done, timed out, or dropped with its runtime.
struct Sampling(Arc<Shared>);

impl Drop for Sampling {
    fn drop(&mut self) {
        self.0.sampling.store(false, Ordering::Release);
    }
}

impl RemoteSize {
    /// The latest sample, if the tier ever reported one. It stays while the tier does not
    /// answer: `cache_remote_errors_total` and `cache_breaker_state` tell that.
    pub(crate) fn latest(&self) -> Option<u64> {
        Some(self.shared.bytes.load(Ordering::Acquire)).filter(|&bytes| bytes != NONE_YET)
    }

    /// Starts a sample in a task on the current tokio runtime, unless one ran within
    /// [`SAMPLE_EVERY`], one is under way, or there is no runtime.
    pub(crate) fn sample_if_due(&self, remote: &Arc<dyn RemoteTier>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let now = tokio::time::Instant::now();
        {
            let mut started = self.shared.started.lock();
            if started.is_some_and(|at| now.saturating_duration_since(at) < SAMPLE_EVERY) {
                return;
            }
            if self.shared.sampling.swap(true, Ordering::AcqRel) {
                return;
            }
            *started = Some(now);
        }
        let sampling = Sampling(Arc::clone(&self.shared));
        let remote = Arc::clone(remote);
        runtime.spawn(async move {
            let sampled = tokio::time::timeout(SAMPLE_TIMEOUT, remote.used_bytes()).await;
            match sampled {
                Ok(Ok(Some(bytes))) => sampling.0.bytes.store(bytes, Ordering::Release),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "remote tier size not sampled"),
                Err(_) => tracing::debug!(?SAMPLE_TIMEOUT, "remote tier size not sampled in time"),
            }
            drop(sampling);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::{cache::BoxFuture, error::RemoteError};

    /// A tier whose size is 100 bytes per time it was asked, or that never answers.
    #[derive(Debug, Default)]
    struct Asked {
        calls: AtomicU32,
        hang: AtomicBool,
    }

    impl RemoteTier for Asked {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
            Box::pin(std::future::ready(Ok(None)))
        }
        fn set<'a>(
            &'a self,
            _: &'a str,
            _: &'a [u8],
            _: Duration,
        ) -> BoxFuture<'a, Result<(), RemoteError>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn invalidate_prefix<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
            Box::pin(std::future::ready(Ok(0)))
        }
        fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
            let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.hang.load(Ordering::SeqCst) {
                Box::pin(std::future::pending())
            } else {
                Box::pin(std::future::ready(Ok(Some(u64::from(calls) * 100))))
            }
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sampled_at_most_every_five_seconds_and_a_hung_tier_costs_only_its_sample() {
        let asked = Arc::new(Asked::default());
        let remote: Arc<dyn RemoteTier> = Arc::clone(&asked) as _;
        let size = RemoteSize::default();
        assert_eq!(size.latest(), None, "nothing before the first sample");

        size.sample_if_due(&remote);
        settle().await;
        assert_eq!(size.latest(), Some(100));
        size.sample_if_due(&remote);
        settle().await;
        assert_eq!(asked.calls.load(Ordering::SeqCst), 1, "not due yet");

        tokio::time::advance(SAMPLE_EVERY).await;
        size.sample_if_due(&remote);
        settle().await;
        assert_eq!(size.latest(), Some(200));

        asked.hang.store(true, Ordering::SeqCst);
        tokio::time::advance(SAMPLE_EVERY).await;
        size.sample_if_due(&remote);
        settle().await;
        assert_eq!(asked.calls.load(Ordering::SeqCst), 3);
        assert_eq!(size.latest(), Some(200), "the last answer stays");
        // Given up at its timeout, then the next sample is due on the usual schedule.
        tokio::time::sleep(SAMPLE_TIMEOUT).await;
        settle().await;
        assert!(!size.shared.sampling.load(Ordering::SeqCst));
        tokio::time::advance(SAMPLE_EVERY - SAMPLE_TIMEOUT).await;
        asked.hang.store(false, Ordering::SeqCst);
        size.sample_if_due(&remote);
        settle().await;
        assert_eq!(size.latest(), Some(400));
    }

    #[test]
    fn outside_a_runtime_nothing_is_sampled() {
        let asked = Arc::new(Asked::default());
        let remote: Arc<dyn RemoteTier> = Arc::clone(&asked) as _;
        let size = RemoteSize::default();
        size.sample_if_due(&remote);
        assert_eq!(asked.calls.load(Ordering::SeqCst), 0);
        assert_eq!(size.latest(), None);
    }
}
