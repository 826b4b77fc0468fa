//! The API's error answers: a status and a JSON body naming what was wrong.

use axum::{
    Json,
    extract::rejection::JsonRejection,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An error answer: `{"error": "...", "field": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The answer's HTTP status. The request's fault: 400 a body that does not parse, 401 no
    /// token (with `WWW-Authenticate: Bearer`), 403 a wrong one, 409 a cleanup that did not
    /// run, 413 a body over the limit, 422 a field out of range (or, in `PUT /config`, of the
    /// wrong type, unknown, or not changeable at run time), 429 past the rate limit.
    /// Otherwise 5xx: 502 when the cache's tiers failed, 503 when memory could not be
    /// sampled, 500 for the rest.
    pub status: StatusCode,
    /// What was wrong, for a person: the `error` of the JSON body.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

/// The body of every error answer (`Error` in the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Body<'a> {
    /// What was wrong, for a person.
    error: &'a str,
    /// The request field or parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    field: Option<&'a str>,
}

/// An error answer's message, as a response extension, for the refusals' log lines.
#[derive(Debug, Clone)]
pub(crate) struct Message(pub(crate) String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 422: the body parsed, but `field` is out of range or inconsistent.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(Message(self.message));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A body that is not the JSON the route takes: 400 (413 when too large), with serde's
/// message, which names the field.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = rejection.body_text();
        Self {
            status,
            field: field_of(&message),
            message,
        }
    }
}

/// The field a deserialization error is about: axum puts its path before the cause
/// (`...target type: cache_type: unknown variant ...`); a missing field is named in the cause.
fn field_of(message: &str) -> Option<String> {
    let cause = message.split("target type: ").nth(1)?;
    let (path, rest) = cause.split_once(": ")?;
    if path != "." && !path.contains(' ') {
        return Some(path.to_owned());
    }
    rest.strip_prefix("missing field `")
        .or_else(|| rest.strip_prefix("unknown field `"))
        .and_then(|name| name.split('`').next())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn the_field_is_read_from_the_message() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        assert_eq!(
            field_of(&format!(
                "{prefix}action: unknown variant `nuke`, expected one of `clear`"
            )),
            Some("action".into())
        );
        assert_eq!(
            field_of(&format!(
                "{prefix}missing field `action` at line 1 column 2"
            )),
            None,
            "no path and no `: ` after it"
        );
        assert_eq!(
            field_of(&format!(
                "{prefix}.: missing field `action` at line 1 column 2"
            )),
            Some("action".into())
        );
        assert_eq!(
            field_of("Failed to parse the request body as JSON: EOF"),
            None
        );
    }
}
