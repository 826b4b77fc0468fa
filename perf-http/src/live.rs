//! The admin API's settings in force: read by every request, replaced by `PUT /config`.

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware::Next,
    response::Response,
};
use parking_lot::{Mutex, MutexGuard, RwLock};
use tower::{Layer, ServiceExt};

use crate::{auth::Tokens, config::AdminConfig, limit::Limiter};

/// The settings in force, and the rate limiter and token digests built from them.
pub(crate) struct LiveAdmin {
    current: RwLock<Current>,
    /// Held by a configuration update from reading the settings to replacing them, so that
    /// two updates do not each undo the other.
    updating: Mutex<()>,
}

/// What a request is checked against, all from one configuration.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) config: Arc<AdminConfig>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) tokens: Arc<Tokens>,
}

impl LiveAdmin {
    pub(crate) fn new(config: AdminConfig) -> Self {
        let limiter = Limiter::per_minute(config.rate_limit_per_minute);
        Self {
            current: RwLock::new(Current {
                tokens: Arc::new(Tokens::new(&config)),
                config: Arc::new(config),
                limiter,
            }),
            updating: Mutex::new(()),
        }
    }

    pub(crate) fn config(&self) -> Arc<AdminConfig> {
        Arc::clone(&self.current.read().config)
    }

    /// The settings, limiter and tokens in force, for one request.
    pub(crate) fn current(&self) -> Current {
        self.current.read().clone()
    }

    /// Taken for the whole of a configuration update.
    pub(crate) fn updating(&self) -> MutexGuard<'_, ()> {
        self.updating.lock()
    }

    /// Puts `config` in force for the requests that arrive from now on. A new rate starts
    /// every client with a full allowance; an unchanged one keeps what each has used.
    pub(crate) fn replace(&self, config: AdminConfig) {
        let mut current = self.current.write();
        if config.rate_limit_per_minute != current.config.rate_limit_per_minute {
            current.limiter = Limiter::per_minute(config.rate_limit_per_minute);
        }
        current.tokens = Arc::new(Tokens::new(&config));
        current.config = Arc::new(config);
    }
}

/// Bounds the request's body by `admin_body_limit_bytes` as it is now: 413 past it.
pub(crate) async fn body_limit(
    State(admin): State<Arc<LiveAdmin>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = usize::try_from(admin.config().body_limit_bytes).unwrap_or(usize::MAX);
    match DefaultBodyLimit::max(limit)
        .layer(next)
        .oneshot(request)
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
