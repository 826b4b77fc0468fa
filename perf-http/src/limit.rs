//! Rate limiting per client: 429 with Retry-After past `admin_rate_limit_per_minute`.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::{error::ApiError, live::LiveAdmin};

/// Clients are told apart by address (served with `into_make_service_with_connect_info`);
/// without one, all share a single allowance.
pub(crate) struct Limiter {
    limiter: DefaultKeyedRateLimiter<Option<IpAddr>>,
}

/// Clients remembered before those idle long enough to be full again are forgotten.
const REMEMBERED_CLIENTS: usize = 10_000;

impl Limiter {
    pub(crate) fn per_minute(requests: u64) -> Arc<Self> {
        let requests = u32::try_from(requests)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(requests)),
        })
    }
}

pub(crate) async fn limit(
    State(admin): State<Arc<LiveAdmin>>,
    request: Request,
    next: Next,
) -> Response {
    let limiter = admin.limiter();
    // Without the connection's address, every client shares one allowance.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    if limiter.limiter.len() > REMEMBERED_CLIENTS {
        limiter.limiter.retain_recent();
    }
    match limiter.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::warn!(client = ?client, retry_after = seconds, "admin API rate limit");
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("rate limit reached; retry in {seconds} s"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}
