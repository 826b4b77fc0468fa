//! What every request goes through before its handler, in this order: who the client is
//! (through trusted proxies), which token it presents, its rate limit (per token name, else
//! per client address), then the token the route needs. Every refusal (401, 403, 413, 429)
//! is logged here, at warn, with the client and the route, never the token.

use std::net::IpAddr;

use axum::{
    extract::{OriginalUri, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    AppState,
    auth::{self, Caller},
    error::{ApiError, Message},
    limit::{self, Bucket},
    proxy,
};

/// The admin routes: a valid token is counted by its name, anyone else by address, and
/// mutations (reads too, with `admin_require_token_for_reads`) need a valid token.
pub(crate) async fn admin(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let current = state.admin.current();
    let client = proxy::client(&request, &current.config.trusted_proxies);
    let route = Route::of(&request);
    // `None`: no bearer token; `Some(None)`: one that is not valid.
    let presented =
        auth::bearer(request.headers()).map(|token| current.tokens.find(token).map(str::to_owned));
    let token = presented.clone().flatten();
    // A wrong token spends the address's allowance, so that guessing is limited too.
    let bucket = match &token {
        Some(name) => Bucket::Token(name.clone()),
        None => Bucket::client(client),
    };
    let needs_token = !matches!(*request.method(), Method::GET | Method::HEAD)
        || current.config.require_token_for_reads;
    let response = match (current.limiter.check(&bucket), presented) {
        (Err(seconds), _) => limit::too_many(seconds),
        (Ok(()), Some(None)) => {
            ApiError::new(StatusCode::FORBIDDEN, "the bearer token is not valid").into_response()
        }
        (Ok(()), None) if needs_token => {
            ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required").into_response()
        }
        (Ok(()), _) => {
            request.extensions_mut().insert(Caller {
                token: token.clone(),
                client,
            });
            next.run(request).await
        }
    };
    log_refusal(&response, client, &route, token.as_deref());
    response
}

/// `GET /health`: open to all, token or not, and limited per client in buckets apart from
/// the admin routes', so that a liveness probe neither needs a token nor competes with
/// anything else for its allowance.
pub(crate) async fn probe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let current = state.admin.current();
    let client = proxy::client(&request, &current.config.trusted_proxies);
    let route = Route::of(&request);
    let response = match current.limiter.check_probe(&Bucket::client(client)) {
        Ok(()) => next.run(request).await,
        Err(seconds) => limit::too_many(seconds),
    };
    log_refusal(&response, client, &route, None);
    response
}

/// A request's method and path as the client sent it (the path includes where the API is
/// nested).
struct Route {
    method: Method,
    path: String,
}

impl Route {
    fn of(request: &Request) -> Self {
        let uri = match request.extensions().get::<OriginalUri>() {
            Some(OriginalUri(original)) => original,
            None => request.uri(),
        };
        Self {
            method: request.method().clone(),
            path: uri.path().to_owned(),
        }
    }
}

/// The refusals that say who may call and how much: logged whichever layer gave them.
const REFUSALS: [StatusCode; 4] = [
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::TOO_MANY_REQUESTS,
];

fn log_refusal(response: &Response, client: Option<IpAddr>, route: &Route, token: Option<&str>) {
    let status = response.status();
    if !REFUSALS.contains(&status) {
        return;
    }
    let client = client.map_or_else(|| "unknown".to_owned(), |address| address.to_string());
    let error = response
        .extensions()
        .get::<Message>()
        .map_or("", |Message(message)| message.as_str());
    tracing::warn!(
        status = status.as_u16(),
        client,
        method = %route.method,
        route = route.path,
        token = token.unwrap_or("none"),
        error,
        "admin API request refused"
    );
}
