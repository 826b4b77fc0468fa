//! Rate limiting: 429 with `Retry-After` past `admin_rate_limit_per_minute`, counted per
//! token name for callers with a valid token and per client address for the rest; liveness
//! probes in buckets of their own.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Arc,
};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::error::ApiError;

/// Whose allowance a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    /// A caller with a valid token, by the token's name: what others send from the same
    /// address (behind the same proxy, say) does not spend it.
    Token(String),
    /// Anyone else, a wrong token included, by address; `None` when the server was not
    /// given connection info, so that every such client shares one allowance.
    Client(Option<IpAddr>),
}

impl Bucket {
    /// A client's bucket. IPv6 clients are counted by /64, the block one host is commonly
    /// given: counted by address, one host could take as many allowances as it likes.
    pub(crate) fn client(address: Option<IpAddr>) -> Self {
        Bucket::Client(address.map(|address| match address {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() >> 64 << 64)),
            v4 => v4,
        }))
    }
}

/// The allowances in force, built from one `admin_rate_limit_per_minute`.
pub(crate) struct Limiter {
    admin: DefaultKeyedRateLimiter<Bucket>,
    probes: DefaultKeyedRateLimiter<Bucket>,
}

/// Callers remembered before those idle long enough to be full again are forgotten.
const REMEMBERED_CALLERS: usize = 10_000;

/// The least rate `GET /health` allows each client: a probe every second from each of ten
/// probers behind one address (a kubelet's liveness and readiness probes, a load balancer's
/// checks) never sees a 429.
pub(crate) const PROBES_PER_MINUTE: u32 = 600;

impl Limiter {
    pub(crate) fn per_minute(requests: u64) -> Arc<Self> {
        let requests = u32::try_from(requests)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        let probes = NonZeroU32::new(PROBES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            admin: RateLimiter::keyed(Quota::per_minute(requests)),
            probes: RateLimiter::keyed(Quota::per_minute(requests.max(probes))),
        })
    }

    /// Spends one request of `bucket`'s allowance, or says how many seconds until there is
    /// one to spend.
    pub(crate) fn check(&self, bucket: &Bucket) -> Result<(), u64> {
        check(&self.admin, bucket)
    }

    /// [`check`](Self::check) for `GET /health`, whose allowances are apart from the rest.
    pub(crate) fn check_probe(&self, bucket: &Bucket) -> Result<(), u64> {
        check(&self.probes, bucket)
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<Bucket>, bucket: &Bucket) -> Result<(), u64> {
    if limiter.len() > REMEMBERED_CALLERS {
        limiter.retain_recent();
    }
    limiter.check_key(bucket).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    })
}

/// 429, with `Retry-After: seconds`.
pub(crate) fn too_many(seconds: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit reached; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_64() {
        let bucket = |text: &str| Bucket::client(Some(text.parse().expect("an address")));
        assert_eq!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:2:ffff::9"));
        assert_ne!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:3::1"));
        assert_ne!(bucket("192.0.2.1"), bucket("192.0.2.2"));
    }

    #[test]
    fn buckets_are_apart_and_probes_have_their_own() {
        let limiter = Limiter::per_minute(2);
        let ops = Bucket::Token("ops".into());
        let client = Bucket::client(Some("192.0.2.1".parse().expect("an address")));
        for _ in 0..2 {
            assert_eq!(limiter.check(&client), Ok(()));
        }
        assert!(
            limiter
                .check(&client)
                .is_err_and(|wait| (1..=30).contains(&wait))
        );
        assert_eq!(
            limiter.check(&ops),
            Ok(()),
            "a token's allowance is its own"
        );
        for _ in 0..PROBES_PER_MINUTE {
            assert_eq!(limiter.check_probe(&client), Ok(()));
        }
        assert!(limiter.check_probe(&client).is_err());
    }
}
