//! [`AlertConfig`]: the thresholds of the alert rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, Secret, duration_serde, require};

/// The thresholds of the alert rules ([`alerts`](crate::alerts::alerts)). Each field's
/// documentation starts with its key (in TOML, and upper-cased after `PERF_` in the
/// environment) and its default. Fractions are in `(0, 1]`.
///
/// A rule over a fraction raises a warning at its threshold and turns critical half-way from
/// the threshold to 1 (at 0.9 for a threshold of 0.8).
///
/// Every threshold can change at run time ([`HOT_FIELDS`](crate::HOT_FIELDS)): the rules read
/// the configuration in force each time they are evaluated.
///
/// Settings may be added in any release: start from [`Default`] and set fields (see
/// [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AlertConfig {
    /// `alert_memory_usage`, default 0.8. The memory alert fires when the process's RSS
    /// reaches this fraction of its memory limit (`memory_limit_bytes`, else the cgroup's,
    /// else physical memory).
    #[serde(rename = "alert_memory_usage")]
    pub memory_usage: f64,
    /// `alert_cache_hit_rate`, default 0.7. The cache alert fires when the hit rate is below
    /// this fraction (critical below half of it), once `cache_min_lookups` lookups were made.
    #[serde(rename = "alert_cache_hit_rate")]
    pub cache_hit_rate: f64,
    /// `alert_cache_min_lookups`, default 1000. L1 lookups (hits and misses) needed before the
    /// hit rate is judged, by the cache alert and the recommendation to grow L1.
    #[serde(rename = "alert_cache_min_lookups")]
    pub cache_min_lookups: u64,
    /// `alert_slow_queries`, default 10. The slow-query alert fires when more than this many
    /// queries over `slow_query_threshold` were logged within `window` (critical past twice
    /// as many).
    #[serde(rename = "alert_slow_queries")]
    pub slow_queries: u64,
    /// `alert_window`, default 5 min. How far back the alerts look: the cache hit rate, the
    /// task failure rate and the slow queries are counted over this window, from counter
    /// deltas, so that old traffic (a cache cold an hour ago) does not weigh on them. Must be
    /// above zero.
    #[serde(rename = "alert_window", with = "duration_serde")]
    pub window: Duration,
    /// `alert_task_failure_rate`, default 0.1. The task alert fires when this fraction of
    /// finished tasks failed, panicked or timed out (cancelled ones are not counted).
    #[serde(rename = "alert_task_failure_rate")]
    pub task_failure_rate: f64,
    /// `alert_resource_usage`, default 0.9. The CPU, system-memory and disk alerts fire when
    /// the machine's use of each reaches this fraction.
    #[serde(rename = "alert_resource_usage")]
    pub resource_usage: f64,
    /// `alert_webhook_url`, default none. Where each alert that fires or resolves is POSTed,
    /// as Alertmanager's v2 API takes it (`http://alertmanager:9093/api/v2/alerts`): plain
    /// `http://` (no TLS), needs the `webhook` feature. A secret, since such URLs often carry
    /// a token: hidden in `Debug` output, logs and the admin API's `GET /config`.
    #[serde(rename = "alert_webhook_url")]
    pub webhook_url: Option<Secret>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            memory_usage: 0.8,
            cache_hit_rate: 0.7,
            cache_min_lookups: 1000,
            slow_queries: 10,
            window: Duration::from_secs(300),
            task_failure_rate: 0.1,
            resource_usage: 0.9,
            webhook_url: None,
        }
    }
}

impl ConfigSection for AlertConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        for (field, value) in [
            ("alert_memory_usage", self.memory_usage),
            ("alert_cache_hit_rate", self.cache_hit_rate),
            ("alert_task_failure_rate", self.task_failure_rate),
            ("alert_resource_usage", self.resource_usage),
        ] {
            require(
                bad,
                value > 0.0 && value <= 1.0,
                field,
                "must be a fraction in (0, 1]",
            );
        }
        require(
            bad,
            !self.window.is_zero(),
            "alert_window",
            "must be greater than zero",
        );
        if let Some(url) = &self.webhook_url
            && let Err(reason) = check_webhook_url(url.expose())
        {
            require(bad, false, "alert_webhook_url", reason);
        }
    }
}

/// Whether `url` can be POSTed to: an absolute `http://` URL with a host. The reason never
/// repeats the URL, which is a secret.
#[cfg(feature = "webhook")]
fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "must be an absolute http:// URL".to_owned())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "must be http://: the webhook has no TLS (use a relay or an \
                        Alertmanager inside the network)"
                    .into(),
            );
        }
        _ => return Err("must be an absolute http:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(())
}

#[cfg(not(feature = "webhook"))]
fn check_webhook_url(_url: &str) -> Result<(), String> {
    Err("needs perf's `webhook` feature (on with `http`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> AlertConfig {
        AlertConfig {
            webhook_url: Some(Secret::new(url)),
            ..AlertConfig::default()
        }
    }

    #[test]
    fn the_webhook_url_never_shows_in_debug_output_or_errors() {
        let config = with_url("http://user:pw@hooks.example/t/s3cret?key=s3cret");
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        let refused = with_url("https://hooks.example/t/s3cret").validate();
        let message = refused.expect_err("no TLS").to_string();
        assert!(message.contains("alert_webhook_url"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[cfg(feature = "webhook")]
    #[test]
    fn only_plain_http_webhook_urls_with_a_host_are_accepted() {
        with_url("http://alertmanager:9093/api/v2/alerts")
            .validate()
            .expect("valid");
        for bad in [
            "https://am/x",
            "alertmanager:9093",
            "ftp://x/y",
            "",
            "http:///x",
        ] {
            let reason = check_webhook_url(bad).expect_err(bad);
            assert!(bad.is_empty() || !reason.contains(bad), "{reason}");
        }
    }

    #[cfg(not(feature = "webhook"))]
    #[test]
    fn without_the_feature_a_webhook_url_is_refused_by_name() {
        let refused = with_url("http://alertmanager:9093/api/v2/alerts").validate();
        let message = refused.expect_err("no client").to_string();
        assert!(
            message.contains("alert_webhook_url") && message.contains("`webhook` feature"),
            "{message}"
        );
    }
}
