//! [`Secret`]: a setting written out where the configuration is stored, never in logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret setting (an admin token, a webhook URL that carries a token): written out where
/// the configuration is stored, never in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `secret`; it is shown as `Secret(***)` by `Debug`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for comparing or storing it: keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
