//! [`AdminConfig`]: the admin API's settings, kept in the same file and `PERF_*` environment
//! as perf-core's [`PerformanceConfig`].

use std::{collections::BTreeMap, path::Path};

pub use perf_core::config::Secret;
use perf_core::{
    ConfigError, PerformanceConfig,
    config::{ConfigSection, FieldError},
};
use serde::{Deserialize, Serialize};

use crate::proxy::IpNet;

/// The admin API's settings. Each field's documentation starts with its key (in TOML, and
/// upper-cased after `PERF_` in the environment) and its default.
///
/// Load it with perf-core's settings from one file and environment with [`load_config`].
/// Every field can change while the API serves, through `PUT /config`.
/// Settings may be added in any release, so the struct cannot be written as a literal
/// outside this crate: start from [`Default`] and set fields.
///
/// ```
/// use perf_http::{AdminConfig, Secret};
///
/// let mut admin = AdminConfig::default();
/// admin.tokens.insert("ops".into(), Secret::new("a-token-of-16-chars-or-more"));
/// admin.require_token_for_reads = true;
/// assert!(perf_core::config::ConfigSection::validate(&admin).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `admin_tokens`, default none. Bearer tokens by name (`{ ops = "..." }` in TOML): a
    /// request presenting one is logged under its name. Mutating routes (POST, PUT) need one;
    /// with none configured, they are refused. Each at least 16 characters.
    #[serde(rename = "admin_tokens")]
    pub tokens: BTreeMap<String, Secret>,
    /// `admin_require_token_for_reads`, default false. The read routes (GET) need a token
    /// too.
    #[serde(rename = "admin_require_token_for_reads")]
    pub require_token_for_reads: bool,
    /// `admin_body_limit_bytes`, default 65 536. Larger request bodies are refused with 413.
    /// At least 1024.
    #[serde(rename = "admin_body_limit_bytes")]
    pub body_limit_bytes: u64,
    /// `admin_rate_limit_per_minute`, default 600. Requests each caller may make a minute,
    /// the whole allowance usable in one burst; past it, 429 with `Retry-After`. A caller
    /// with a valid token is counted by the token's name; any other by client address (when
    /// served with connection info; otherwise all of them together; IPv6 clients by /64). `GET
    /// /health` is counted apart, at this rate but never under 600 a minute. Between 1 and
    /// 2^32 - 1.
    #[serde(rename = "admin_rate_limit_per_minute")]
    pub rate_limit_per_minute: u64,
    /// `admin_trusted_proxies`, default none. Addresses and networks (`["10.0.0.0/8",
    /// "127.0.0.1"]`, or one string with commas, as an environment variable) of the reverse
    /// proxies in front of the API. A request whose connection comes from one of them is
    /// counted against the client that `X-Forwarded-For` names: its right-most address that
    /// is not itself a trusted proxy. From any other peer, `X-Forwarded-For` is ignored.
    #[serde(
        rename = "admin_trusted_proxies",
        deserialize_with = "crate::proxy::one_or_many"
    )]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            tokens: BTreeMap::new(),
            require_token_for_reads: false,
            body_limit_bytes: 64 * 1024,
            rate_limit_per_minute: 600,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ConfigSection for AdminConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        let mut require = |ok: bool, field: &'static str, reason: &str| {
            if !ok {
                bad.push(FieldError {
                    field,
                    reason: reason.into(),
                });
            }
        };
        require(
            self.rate_limit_per_minute > 0 && self.rate_limit_per_minute <= u64::from(u32::MAX),
            "admin_rate_limit_per_minute",
            "must be between 1 and 4294967295",
        );
        require(
            self.body_limit_bytes >= 1024,
            "admin_body_limit_bytes",
            "must be at least 1024",
        );
        require(
            self.tokens.values().all(|token| token.expose().len() >= 16),
            "admin_tokens",
            "every token must be at least 16 characters",
        );
    }
}

/// perf-core's configuration and the admin API's, from one source: defaults, then the TOML
/// file if given, then `PERF_*` environment variables; both validated, every bad field of
/// either reported.
pub fn load_config(path: Option<&Path>) -> Result<(PerformanceConfig, AdminConfig), ConfigError> {
    PerformanceConfig::load_with(path)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its large error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AdminConfig::default().validate().expect("valid");
    }

    #[test]
    fn the_flat_admin_keys_load_with_the_rest() {
        let (config, admin) = PerformanceConfig::from_toml_str_with::<AdminConfig>(
            "max_workers = 3\nadmin_require_token_for_reads = true\n\
             admin_tokens = { ops = \"0123456789abcdef\" }",
        )
        .expect("valid");
        assert_eq!(config.tasks.max_workers, 3);
        assert!(admin.require_token_for_reads);
        assert_eq!(admin.tokens["ops"].expose(), "0123456789abcdef");
        assert_eq!(format!("{:?}", admin.tokens["ops"]), "Secret(***)");
    }

    #[test]
    fn bad_admin_fields_are_named() {
        let Err(ConfigError::Invalid(errors)) = PerformanceConfig::from_toml_str_with::<AdminConfig>(
            "admin_rate_limit_per_minute = 0\nadmin_tokens = { ops = \"short\" }",
        ) else {
            panic!("expected an invalid configuration");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["admin_rate_limit_per_minute", "admin_tokens"]);
    }

    #[test]
    fn the_environment_names_stay_flat() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "perf.toml",
                "admin_body_limit_bytes = 2048\ncache_ttl = \"5m\"",
            )?;
            jail.set_env("PERF_ADMIN_RATE_LIMIT_PER_MINUTE", "30");
            jail.set_env("PERF_ADMIN_TOKENS", "{ops=\"0123456789abcdef\"}");
            jail.set_env("PERF_MAX_WORKERS", "6");
            jail.set_env("PERF_ADMIN_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
            let (config, admin) =
                load_config(Some(Path::new("perf.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.tasks.max_workers, 6);
            assert_eq!(config.cache.ttl, std::time::Duration::from_secs(300));
            assert_eq!(admin.body_limit_bytes, 2048);
            assert_eq!(admin.rate_limit_per_minute, 30);
            assert_eq!(admin.tokens["ops"].expose(), "0123456789abcdef");
            let proxies: Vec<_> = admin
                .trusted_proxies
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32"]);
            Ok(())
        });
    }
}
