//! Request bodies: a JSON object, read into the route's type.

use axum::{
    Json,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// A body that is a JSON object read as `T`. serde would also read a struct from an array of
/// its fields in order (`[true]` for `{"force": true}`); the API takes objects only.
/// Refusals as [`Json`]'s, through [`ApiError`]: 400, or 413 past the body limit.
pub(crate) struct Object<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Object<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<Value>::from_request(request, state).await?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object",
            ));
        }
        let bytes = serde_json::to_vec(&value)
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
        // Read from the bytes, so that a refusal names the field as Json's own does.
        let Json(object) = Json::<T>::from_bytes(&bytes)?;
        Ok(Object(object))
    }
}
