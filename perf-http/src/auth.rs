//! Bearer-token authentication.

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;

use crate::{AppState, error::ApiError};

/// The name of the token a request was made with (for the logs), as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) String);

/// Mutations always need a valid token; reads when `admin_require_token_for_reads`.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let admin = state.admin.config();
    let mutation = !matches!(*request.method(), Method::GET | Method::HEAD);
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        if mutation || admin.require_token_for_reads {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ));
        }
        return Ok(next.run(request).await);
    };
    // Every token is compared, whichever matches, so the time taken tells nothing.
    let mut matched = None;
    for (name, token) in &admin.tokens {
        if bool::from(token.expose().as_bytes().ct_eq(presented.as_bytes())) {
            matched = Some(name.clone());
        }
    }
    match matched {
        Some(name) => {
            request.extensions_mut().insert(Caller(name));
            Ok(next.run(request).await)
        }
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the bearer token is not valid",
        )),
    }
}
