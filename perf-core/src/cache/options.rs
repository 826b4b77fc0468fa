//! What a load does when its source fails or slows: fail-safe, timeouts, refresh-ahead,
//! TTL jitter and failure caching, per call ([`LoadOptions`]) over the configuration's
//! defaults (`cache_fail_safe_max` and the fields after it).

use std::{any::Any, fmt, sync::Arc, time::Duration};

use super::{Tier, codec::Seal};
use crate::{Error, SharedFailure, config::CacheConfig};

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
/// Per-call settings of a load. A setting left unset takes the cache's default from the
/// configuration; a zero duration or fraction turns a feature off for this call.
///
/// ```
/// use std::time::Duration;
/// use perf_core::{Tier, cache::LoadOptions};
///
/// let options = LoadOptions::new(Tier::L2)
///     .ttl(Duration::from_secs(300))
///     .fail_safe(Duration::from_secs(3600)) // serve the last value for an hour if the source fails
///     .soft_timeout(Duration::from_millis(100)) // a stale value after 100 ms...
///     .hard_timeout(Duration::from_secs(2)) // ...and `Error::LoaderTimeout` after 2 s
///     .eager_refresh(0.8) // reload in the background after 80% of the TTL
///     .jitter(0.1); // up to 10% off each TTL, so keys written together expire apart
/// assert_eq!(options.tier_of(), Tier::L2);
/// ```
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    tier: Tier,
    ttl: Option<Duration>,
    fail_safe: Option<Duration>,
    fail_safe_throttle: Option<Duration>,
    soft_timeout: Option<Duration>,
    hard_timeout: Option<Duration>,
    eager_refresh: Option<f64>,
    jitter: Option<f64>,
    failure_ttl: Option<Duration>,
    encrypt: bool,
}

impl LoadOptions {
    /// Store down to `tier`; everything else from the configuration.
    pub fn new(tier: Tier) -> Self {
        Self {
            tier,
            ttl: None,
            fail_safe: None,
            fail_safe_throttle: None,
            soft_timeout: None,
            hard_timeout: None,
            eager_refresh: None,
            jitter: None,
            failure_ttl: None,
            encrypt: false,
        }
    }

    /// The deepest tier the value is read from and stored in.
    pub fn tier_of(&self) -> Tier {
        self.tier
    }

    /// How long a loaded value is fresh (default `cache_ttl`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The same settings for another tier.
    pub(crate) fn in_tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// `ttl` when given, else the configuration's.
    pub(crate) fn ttl_or(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl.or(self.ttl);
        self
    }

    /// Keep a value this long past its TTL, as *stale*, and serve it when a reload fails or
    /// times out (`cache_fail_safe_max`; zero turns fail-safe off).
    pub fn fail_safe(mut self, max: Duration) -> Self {
        self.fail_safe = Some(max);
        self
    }

    /// After serving a stale value because the source failed, serve it as fresh for this long
    /// before asking the source again (`cache_fail_safe_throttle`).
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// With a stale value at hand, stop waiting for the loader after this long and return the
    /// stale value (`cache_soft_timeout`; zero: off).
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Stop waiting for the loader after this long: the stale value if there is one, else
    /// [`Error::LoaderTimeout`] (`cache_hard_timeout`; zero: off).
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Reload a value read after this fraction of its TTL, while callers keep the current
    /// value (`cache_eager_refresh`; zero: off). Must be below 1.
    pub fn eager_refresh(mut self, fraction: f64) -> Self {
        self.eager_refresh = Some(fraction);
        self
    }

    /// Shorten each TTL by a random share of up to this fraction (`cache_ttl_jitter`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = Some(fraction);
        self
    }

    /// After a load fails, hand its failure to the callers of the next `failure_ttl` without
    /// running the loader again (`cache_failure_ttl`; zero: off).
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = Some(ttl);
        self
    }

    /// Encrypt the value in L2 and the remote tier even where `cache_value_protection` only
    /// authenticates. Needs `cache_encryption_keys`: without a key, nothing is cached, as for
    /// a key over `max_key_bytes`: a load runs its loader uncached (and logs
    /// [`Error::NoEncryptionKeys`]), a [`set_with`](super::MultiLevelCache::set_with) returns
    /// it.
    pub fn encrypt(mut self) -> Self {
        self.encrypt = true;
        self
    }

    /// These options over `defaults`, checked.
    pub(crate) fn resolve(&self, defaults: &Policy) -> Result<Policy, Error> {
        let positive = |d: Option<Duration>, default: Option<Duration>| match d {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => default,
        };
        let fraction = |f: Option<f64>, default: f64| f.unwrap_or(default);
        let policy = Policy {
            tier: self.tier,
            ttl: self.ttl.unwrap_or(defaults.ttl),
            fail_safe: positive(self.fail_safe, defaults.fail_safe),
            fail_safe_throttle: self
                .fail_safe_throttle
                .unwrap_or(defaults.fail_safe_throttle),
            soft_timeout: positive(self.soft_timeout, defaults.soft_timeout),
            hard_timeout: positive(self.hard_timeout, defaults.hard_timeout),
            eager_refresh: fraction(self.eager_refresh, defaults.eager_refresh),
            jitter: fraction(self.jitter, defaults.jitter),
            failure_ttl: positive(self.failure_ttl, defaults.failure_ttl),
            seal: if self.encrypt {
                Seal::Encrypt
            } else {
                defaults.seal
            },
        };
        policy.check().map_err(Error::InvalidLoadOptions)?;
        Ok(policy)
    }
}

/// Load settings with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    pub(crate) tier: Tier,
    pub(crate) ttl: Duration,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) fail_safe_throttle: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    /// 0: off.
    pub(crate) eager_refresh: f64,
    /// 0: off.
    pub(crate) jitter: f64,
    pub(crate) failure_ttl: Option<Duration>,
    pub(crate) seal: Seal,
}

impl Policy {
    /// The configuration's defaults (the tier is each call's).
    pub(crate) fn from_config(config: &CacheConfig) -> Self {
        let on = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            tier: Tier::L1,
            ttl: config.ttl,
            fail_safe: on(config.fail_safe_max),
            fail_safe_throttle: config.fail_safe_throttle,
            soft_timeout: on(config.soft_timeout),
            hard_timeout: on(config.hard_timeout),
            eager_refresh: config.eager_refresh,
            jitter: config.ttl_jitter,
            failure_ttl: on(config.failure_ttl),
            seal: Seal::Default,
        }
    }

    /// Every reason these settings cannot work together, joined into one message.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        if self.ttl.is_zero() {
            bad.push("ttl must be greater than zero".to_owned());
        }
        if !(0.0..1.0).contains(&self.eager_refresh) {
            bad.push(format!(
                "eager_refresh must be a fraction in [0, 1), not {}",
                self.eager_refresh
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            bad.push(format!(
                "jitter must be a fraction in [0, 1), not {}",
                self.jitter
            ));
        }
        if self.fail_safe.is_some() && self.fail_safe_throttle.is_zero() {
            bad.push("fail_safe_throttle must be greater than zero".to_owned());
        }
        if let (Some(soft), Some(hard)) = (self.soft_timeout, self.hard_timeout)
            && soft > hard
        {
            bad.push(format!(
                "soft_timeout ({soft:?}) must not be above hard_timeout ({hard:?})"
            ));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    /// The TTL to store with, shortened by up to `jitter` of itself.
    pub(crate) fn jittered_ttl(&self) -> Duration {
        if self.jitter <= 0.0 {
            return self.ttl;
        }
        let cut = self.ttl.mul_f64(self.jitter * fastrand::f64());
        self.ttl.saturating_sub(cut).max(Duration::from_millis(1))
    }
}

/// Whether a value came from a live entry or from one kept past its TTL by fail-safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// Just loaded, or read within its TTL; a stale value re-armed for `fail_safe_throttle`
    /// after a failure counts as fresh to the calls that read it later.
    Fresh,
    /// Past its TTL, served because the source failed or timed out (fail-safe).
    Stale,
}

/// A value from [`get_or_load_with`](super::MultiLevelCache::get_or_load_with) or
/// [`get_or_load_detached`](super::MultiLevelCache::get_or_load_detached), and whether it is
/// fresh.
#[derive(Debug)]
#[non_exhaustive]
pub struct Loaded<T> {
    /// The cached or loaded value, shared with the cache.
    pub value: Arc<T>,
    /// [`Stale`](Freshness::Stale) when fail-safe served an expired value because the loader
    /// failed or timed out.
    pub freshness: Freshness,
}

impl<T> Clone for Loaded<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            freshness: self.freshness,
        }
    }
}

impl<T> Loaded<T> {
    pub(crate) fn fresh(value: Arc<T>) -> Self {
        Self {
            value,
            freshness: Freshness::Fresh,
        }
    }

    /// Whether fail-safe served this value past its TTL ([`Freshness::Stale`]).
    pub fn is_stale(&self) -> bool {
        self.freshness == Freshness::Stale
    }
}

/// How a failed load's error reaches the callers that waited on it. The public API shares
/// the message; `#[cache_result]` also shares `Clone` errors by value.
pub struct ErrorSharing<E> {
    pub(crate) share: fn(&E) -> Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) recover: fn(&SharedFailure) -> Option<E>,
}

impl<E> Clone for ErrorSharing<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for ErrorSharing<E> {}

impl<E> fmt::Debug for ErrorSharing<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorSharing")
    }
}

impl<E> ErrorSharing<E> {
    /// Waiters get the error's message inside [`Error::LoaderFailed`], converted with `From`.
    pub fn by_message() -> Self {
        Self {
            share: |_| None,
            recover: |_| None,
        }
    }
}

impl<E: Clone + Send + Sync + 'static> ErrorSharing<E> {
    /// Waiters get a clone of the leader's error.
    pub fn by_clone() -> Self {
        Self {
            share: |error| Some(Arc::new(error.clone())),
            recover: |failure| failure.downcast_ref::<E>().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Policy {
        Policy::from_config(&CacheConfig::default())
    }

    #[test]
    fn unset_options_take_the_defaults_and_zero_turns_a_feature_off() {
        let mut base = defaults();
        base.fail_safe = Some(Duration::from_secs(60));
        let policy = LoadOptions::new(Tier::L2).resolve(&base).expect("valid");
        assert_eq!(policy.fail_safe, Some(Duration::from_secs(60)));
        assert_eq!(policy.tier, Tier::L2);
        let off = LoadOptions::new(Tier::L1)
            .fail_safe(Duration::ZERO)
            .resolve(&base)
            .expect("valid");
        assert_eq!(off.fail_safe, None);
    }

    #[test]
    fn a_soft_timeout_above_the_hard_one_is_refused_naming_both() {
        let err = LoadOptions::new(Tier::L1)
            .soft_timeout(Duration::from_secs(3))
            .hard_timeout(Duration::from_secs(1))
            .resolve(&defaults())
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("soft_timeout") && text.contains("hard_timeout"),
            "{text}"
        );
        for bad in [1.0, -0.1, f64::NAN] {
            let err = LoadOptions::new(Tier::L1)
                .eager_refresh(bad)
                .resolve(&defaults())
                .expect_err("refused");
            assert!(err.to_string().contains("eager_refresh"), "{err}");
        }
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let mut policy = defaults();
        policy.ttl = Duration::from_secs(100);
        policy.jitter = 0.2;
        let ttls: Vec<_> = (0..1000).map(|_| policy.jittered_ttl()).collect();
        assert!(
            ttls.iter()
                .all(|t| *t <= policy.ttl && *t >= Duration::from_secs(80))
        );
        let distinct: std::collections::BTreeSet<_> = ttls.iter().collect();
        assert!(distinct.len() > 100, "spread out: {}", distinct.len());
    }
}
