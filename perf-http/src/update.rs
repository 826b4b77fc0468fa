//! `PUT /config`: the fields given, over the settings in force, checked one by one and then
//! together, applied all or nothing.

use axum::http::StatusCode;
use perf_core::{
    ConfigError, PerformanceConfig,
    config::{ConfigSection, canonical_key},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{AppState, config::AdminConfig, error::ApiError};

/// How `GET /config` shows a secret. Sent back in place of any field's value, it keeps the
/// value in force, so that the document `GET` returns can be `PUT` as it is.
pub(crate) const MASK: &str = "***";

/// perf-core's settings and the admin API's as JSON objects, side by side as in the
/// configuration file.
struct Documents {
    core: Map<String, Value>,
    admin: Map<String, Value>,
}

/// Applies `changes` to the optimizer and the admin API, or refuses them naming the field at
/// fault, changing nothing.
pub(crate) fn apply(state: &AppState, changes: Map<String, Value>) -> Result<(), ApiError> {
    let _one_at_a_time = state.admin.updating();
    let admin_in_force = state.admin.config();
    let mut documents = Documents {
        core: object(&*state.optimizer.config())?,
        admin: object(&*admin_in_force)?,
    };
    for (given, mut value) in changes {
        let key = canonical_key(&given).to_owned();
        let admin = documents.admin.contains_key(&key);
        if !admin && !documents.core.contains_key(&key) {
            return Err(ApiError::invalid(
                given.clone(),
                format!("unknown field `{given}`"),
            ));
        }
        if value.as_str() == Some(MASK) {
            continue;
        }
        if key == "admin_tokens" {
            unmask_tokens(&mut value, &admin_in_force)?;
        }
        // Read with every other field as it is, so that a wrong type is this field's fault.
        if admin {
            try_with::<AdminConfig>(&documents.admin, &given, &key, &value)?;
            documents.admin.insert(key, value);
        } else {
            try_with::<PerformanceConfig>(&documents.core, &given, &key, &value)?;
            documents.core.insert(key, value);
        }
    }
    let core: PerformanceConfig = read(documents.core)?;
    let admin: AdminConfig = read(documents.admin)?;
    admin.validate().map_err(refused)?;
    if admin.tokens.is_empty() && !admin_in_force.tokens.is_empty() {
        return Err(ApiError::invalid(
            "admin_tokens",
            "invalid configuration: admin_tokens: at least one must stay while running \
             (without one, the configuration could not be changed again)",
        ));
    }
    // The optimizer's update is the one that can still refuse: the admin settings go last.
    state.optimizer.update_config(core).map_err(refused)?;
    state.admin.replace(admin);
    Ok(())
}

/// Tokens given as the mask keep the token of that name in force.
fn unmask_tokens(value: &mut Value, in_force: &AdminConfig) -> Result<(), ApiError> {
    let Some(tokens) = value.as_object_mut() else {
        return Ok(()); // not an object: the type check names the field
    };
    for (name, token) in tokens.iter_mut() {
        if token.as_str() != Some(MASK) {
            continue;
        }
        let kept = in_force.tokens.get(name).ok_or_else(|| {
            ApiError::invalid(
                "admin_tokens",
                format!(
                    "invalid configuration: admin_tokens: no token named `{name}` to keep; \
                     give its value"
                ),
            )
        })?;
        *token = Value::String(kept.expose().to_owned());
    }
    Ok(())
}

/// Refuses `value` for `key` if `T` cannot be read with it in place of the current value.
fn try_with<T: DeserializeOwned>(
    current: &Map<String, Value>,
    given: &str,
    key: &str,
    value: &Value,
) -> Result<(), ApiError> {
    let mut trial = current.clone();
    trial.insert(key.to_owned(), value.clone());
    match serde_json::from_value::<T>(Value::Object(trial)) {
        Ok(_) => Ok(()),
        Err(error) => Err(ApiError::invalid(
            given.to_owned(),
            format!("invalid configuration: {given}: {error}"),
        )),
    }
}

fn read<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()))
}

/// 422 naming the first field at fault; the message names them all.
fn refused(error: ConfigError) -> ApiError {
    let field = match &error {
        ConfigError::Invalid(fields) => fields.first().map(|bad| bad.field.to_owned()),
        _ => None,
    };
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: error.to_string(),
        field,
    }
}

/// A configuration's fields as JSON.
pub(crate) fn object(config: &impl serde::Serialize) -> Result<Map<String, Value>, ApiError> {
    match serde_json::to_value(config) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config is not an object",
        )),
        Err(error) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )),
    }
}
