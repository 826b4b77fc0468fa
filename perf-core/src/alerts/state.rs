//! The alerts' state between evaluations: which fire and since when, and the transitions
//! from one evaluation to the next, logged and exported as `performance_alerts_active`.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Alert, AlertKind, Reading, Severity};
use crate::{
    metrics::{self, PERFORMANCE_ALERTS_ACTIVE, labels},
    query::serialize_system_time,
};

/// Whether a [`Transition`] started or ended an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertStatus {
    /// The rule's figure crossed its threshold (or the alert turned more or less severe).
    Firing,
    /// The figure is back on the right side of the threshold (or the severity changed).
    Resolved,
}

/// An alert that started or stopped firing: logged through `tracing` (warn when firing, info
/// when resolved), exported as `performance_alerts_active`, and sent to `alert_webhook_url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Transition {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The alert with the severity it fired at. When resolved, its figures are those that
    /// ended it, or the last seen while it fired when the rule could no longer judge (memory
    /// not sampled, too few lookups).
    pub alert: Alert,
    /// When it started firing.
    #[serde(serialize_with = "serialize_system_time")]
    pub starts_at: SystemTime,
    /// When it resolved; `None` while firing.
    #[serde(serialize_with = "serialize_optional_time")]
    pub ends_at: Option<SystemTime>,
}

/// An alert firing now, from the background evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ActiveAlert {
    /// The alert, with the figures of the latest evaluation.
    #[serde(flatten)]
    pub alert: Alert,
    /// When it started firing at this severity; seconds since the Unix epoch in JSON.
    #[serde(serialize_with = "serialize_system_time")]
    pub since: SystemTime,
}

/// What the alert webhook did, counted since the optimizer was built. All 0 without a
/// webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Batches of transitions the webhook accepted (a 2xx answer).
    pub sent: u64,
    /// Batches given up: refused (a 4xx answer other than 429), or still failing after the
    /// last retry.
    pub failed: u64,
    /// Attempts made again after a failure (a timeout, no connection, a 5xx or 429 answer).
    pub retries: u64,
    /// Batches not queued because the queue was full (the webhook too slow for long), or
    /// because no background loops were running to send them.
    pub dropped: u64,
}

/// The alerts' state from the background evaluation, as `GET /alerts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AlertState {
    /// The alerts firing now, most severe first.
    pub firing: Vec<ActiveAlert>,
    /// When the alerts were last evaluated; `None` if never (the background loops not
    /// started). Seconds since the Unix epoch in JSON.
    #[serde(serialize_with = "serialize_optional_time")]
    pub evaluated_at: Option<SystemTime>,
    /// `alert_window`, over which the counters were judged.
    #[serde(serialize_with = "crate::config::duration_serde::serialize")]
    pub window: Duration,
    /// What the webhook did.
    pub webhook: WebhookStats,
}

/// Which alerts fire, and since when.
#[derive(Debug, Default)]
pub(crate) struct AlertBook {
    /// In [`AlertKind::ALL`]'s order.
    firing: Vec<ActiveAlert>,
    evaluated_at: Option<SystemTime>,
}

impl AlertBook {
    /// Takes an evaluation's readings: what starts firing, what stops, and what changes
    /// severity (resolved at the old one, firing at the new: they are two series).
    pub(crate) fn update(&mut self, readings: Vec<Reading>, now: SystemTime) -> Vec<Transition> {
        let mut transitions = Vec::new();
        let mut firing = Vec::new();
        let reading = |kind: AlertKind| readings.iter().find(|r| r.kind == kind);
        for active in self.firing.drain(..) {
            let kind = active.alert.kind;
            match reading(kind) {
                Some(now_read) if now_read.severity == Some(active.alert.severity) => {
                    firing.push(ActiveAlert {
                        alert: alert(now_read, active.alert.severity),
                        since: active.since,
                    });
                }
                ended => transitions.push(Transition {
                    status: AlertStatus::Resolved,
                    alert: ended.map_or(active.alert.clone(), |r| alert(r, active.alert.severity)),
                    starts_at: active.since,
                    ends_at: Some(now),
                }),
            }
        }
        for raised in &readings {
            let Some(severity) = raised.severity else {
                continue;
            };
            if firing.iter().any(|active| active.alert.kind == raised.kind) {
                continue;
            }
            firing.push(ActiveAlert {
                alert: alert(raised, severity),
                since: now,
            });
            transitions.push(Transition {
                status: AlertStatus::Firing,
                alert: alert(raised, severity),
                starts_at: now,
                ends_at: None,
            });
        }
        firing.sort_by_key(|active| AlertKind::ALL.iter().position(|&k| k == active.alert.kind));
        self.firing = firing;
        self.evaluated_at = Some(now);
        transitions
    }

    /// The alerts firing, most severe first.
    pub(crate) fn firing(&self) -> Vec<ActiveAlert> {
        let mut firing = self.firing.clone();
        firing.sort_by_key(|active| std::cmp::Reverse(active.alert.severity));
        firing
    }

    pub(crate) fn evaluated_at(&self) -> Option<SystemTime> {
        self.evaluated_at
    }
}

fn alert(reading: &Reading, severity: Severity) -> Alert {
    Alert {
        kind: reading.kind,
        severity,
        message: reading.message.clone(),
        observed: reading.observed,
        threshold: reading.threshold,
    }
}

/// Logs a transition and sets its `performance_alerts_active` series.
pub(crate) fn announce(transition: &Transition) {
    let alert = &transition.alert;
    let (name, severity) = (alert.kind.as_str(), alert.severity.as_str());
    let gauge = ::metrics::gauge!(
        metrics::name(PERFORMANCE_ALERTS_ACTIVE),
        labels::ALERT => name,
        labels::SEVERITY => severity
    );
    match transition.status {
        AlertStatus::Firing => {
            gauge.set(1.0);
            tracing::warn!(
                alert = name,
                severity,
                value = alert.observed,
                threshold = alert.threshold,
                message = %alert.message,
                "alert firing"
            );
        }
        AlertStatus::Resolved => {
            gauge.set(0.0);
            tracing::info!(
                alert = name,
                severity,
                value = alert.observed,
                threshold = alert.threshold,
                message = %alert.message,
                "alert resolved"
            );
        }
    }
}

fn serialize_optional_time<S: serde::Serializer>(
    at: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize_system_time(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: AlertKind, severity: Option<Severity>, observed: f64) -> Reading {
        Reading {
            kind,
            severity,
            message: format!("{observed}"),
            observed,
            threshold: 0.8,
        }
    }

    fn statuses(transitions: &[Transition]) -> Vec<(AlertKind, Severity, AlertStatus)> {
        transitions
            .iter()
            .map(|t| (t.alert.kind, t.alert.severity, t.status))
            .collect()
    }

    #[test]
    fn fires_stays_firing_changes_severity_and_resolves() {
        let mut book = AlertBook::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let memory = AlertKind::MemoryUsage;
        assert_eq!(book.update(vec![reading(memory, None, 0.5)], at(0)), []);

        let fired = book.update(vec![reading(memory, Some(Severity::Warning), 0.85)], at(15));
        assert_eq!(
            statuses(&fired),
            [(memory, Severity::Warning, AlertStatus::Firing)]
        );
        assert_eq!((fired[0].starts_at, fired[0].ends_at), (at(15), None));

        // Still firing: no transition, the figures follow, the start stays.
        assert_eq!(
            book.update(vec![reading(memory, Some(Severity::Warning), 0.87)], at(30)),
            []
        );
        let firing = book.firing();
        assert_eq!((firing[0].alert.observed, firing[0].since), (0.87, at(15)));

        let worse = book.update(
            vec![reading(memory, Some(Severity::Critical), 0.95)],
            at(45),
        );
        assert_eq!(
            statuses(&worse),
            [
                (memory, Severity::Warning, AlertStatus::Resolved),
                (memory, Severity::Critical, AlertStatus::Firing)
            ]
        );

        let resolved = book.update(vec![reading(memory, None, 0.4)], at(60));
        assert_eq!(
            statuses(&resolved),
            [(memory, Severity::Critical, AlertStatus::Resolved)]
        );
        let ended = &resolved[0];
        assert_eq!(ended.alert.observed, 0.4, "the figure that ended it");
        assert_eq!((ended.starts_at, ended.ends_at), (at(45), Some(at(60))));
        assert_eq!(book.firing(), []);
        assert_eq!(book.evaluated_at(), Some(at(60)));
    }

    #[test]
    fn a_rule_that_can_no_longer_judge_resolves_with_its_last_figures() {
        let mut book = AlertBook::default();
        let now = SystemTime::UNIX_EPOCH;
        let cache = AlertKind::CacheHitRate;
        book.update(vec![reading(cache, Some(Severity::Critical), 0.1)], now);
        let resolved = book.update(Vec::new(), now + Duration::from_secs(15));
        assert_eq!(
            statuses(&resolved),
            [(cache, Severity::Critical, AlertStatus::Resolved)]
        );
        assert_eq!(resolved[0].alert.observed, 0.1);
    }

    #[test]
    fn firing_alerts_are_listed_most_severe_first() {
        let mut book = AlertBook::default();
        book.update(
            vec![
                reading(AlertKind::MemoryUsage, Some(Severity::Warning), 0.85),
                reading(AlertKind::DiskExhaustion, Some(Severity::Critical), 0.99),
            ],
            SystemTime::UNIX_EPOCH,
        );
        let kinds: Vec<_> = book.firing().iter().map(|a| a.alert.kind).collect();
        assert_eq!(kinds, [AlertKind::DiskExhaustion, AlertKind::MemoryUsage]);
    }
}
