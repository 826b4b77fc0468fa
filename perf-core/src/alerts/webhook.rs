//! The alert webhook: each evaluation's transitions POSTed to `alert_webhook_url` as
//! Alertmanager's v2 API takes them, from a bounded queue, by a loop of its own, so that a
//! slow or dead receiver never holds up the evaluation.
//!
//! Every attempt has a timeout; a failure (no connection, a timeout, a 5xx or 429 answer) is
//! tried again after a doubling pause, a bounded number of times; a batch that finds the
//! queue full is dropped and counted. The URL may carry a token: logs show only its scheme
//! and host.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use http_body_util::Full;
use hyper::{Request, Uri, body::Bytes, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{AlertStatus, Transition, WebhookStats};
use crate::config::Secret;

/// Batches waiting to be sent, at most: past them, a receiver that is down for long costs
/// dropped notifications, not memory.
const QUEUE: usize = 64;

/// How the webhook retries; [`Policy::default`] in service, shorter pauses in tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// How long one attempt may take, connection included.
    pub(crate) timeout: Duration,
    /// Attempts per batch, the first included.
    pub(crate) attempts: u32,
    /// The pause before the first retry, doubled before each next.
    pub(crate) backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_secs(1),
        }
    }
}

/// The URL as logs may show it: scheme and host, no credentials, path or query.
pub(crate) fn redact(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => {
                let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{scheme}://{host}{port}/***")
            }
            _ => "***".into(),
        },
        Err(_) => "***".into(),
    }
}

/// One evaluation's transitions and where to send them.
#[derive(Debug)]
pub(crate) struct Batch {
    url: Secret,
    transitions: Vec<Transition>,
}

/// The evaluation's side of the queue, and the counts both sides keep.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Set while the background loops run, by [`Outbox::open`].
    queue: Mutex<Option<mpsc::Sender<Batch>>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

impl Outbox {
    /// A fresh queue for a start of the background loops, and the loop that empties it: it
    /// ends when the outbox is dropped or opened again, after the batch in hand.
    pub(crate) fn open(&self, policy: Policy) -> impl Future<Output = ()> + Send + use<> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        *self.queue.lock() = Some(sender);
        deliver_all(receiver, Arc::clone(&self.counts), policy)
    }

    /// Queues `transitions` for `url`, or drops them (counted) when the queue is full or no
    /// loop runs. Never waits.
    pub(crate) fn send(&self, url: &Secret, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let batch = Batch {
            url: url.clone(),
            transitions,
        };
        let refused = match self.queue.lock().as_ref() {
            Some(queue) => queue.try_send(batch).err(),
            None => Some(TrySendError::Closed(batch)),
        };
        let Some(refused) = refused else { return };
        self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        let webhook = redact(url.expose());
        match refused {
            TrySendError::Full(batch) => tracing::warn!(
                %webhook,
                transitions = batch.transitions.len(),
                "alert webhook queue full: notification dropped"
            ),
            TrySendError::Closed(batch) => tracing::debug!(
                %webhook,
                transitions = batch.transitions.len(),
                "alert webhook not running: notification dropped"
            ),
        }
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let counts = &self.counts;
        WebhookStats {
            sent: counts.sent.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            retries: counts.retries.load(Ordering::Relaxed),
            dropped: counts.dropped.load(Ordering::Relaxed),
        }
    }
}

async fn deliver_all(mut queue: mpsc::Receiver<Batch>, counts: Arc<Counts>, policy: Policy) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    while let Some(batch) = queue.recv().await {
        let delivered = deliver(&client, &batch, &counts, policy).await;
        let counter = if delivered {
            &counts.sent
        } else {
            &counts.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth trying again: no connection, a timeout, a 5xx or 429 answer.
    Retry(String),
    /// Refused for good: another 4xx answer, or a URL that cannot be sent to.
    GiveUp(String),
}

/// Sends one batch, retrying as `policy` says; true once accepted.
async fn deliver(
    client: &Client<HttpConnector, Full<Bytes>>,
    batch: &Batch,
    counts: &Counts,
    policy: Policy,
) -> bool {
    let webhook = redact(batch.url.expose());
    let body = Bytes::from(payload(&batch.transitions).to_string());
    let mut pause = policy.backoff;
    for attempt in 1..=policy.attempts.max(1) {
        let outcome = match tokio::time::timeout(
            policy.timeout,
            post(client, batch.url.expose(), body.clone()),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Attempt::Retry(format!("no answer within {:?}", policy.timeout)),
        };
        match outcome {
            Attempt::Delivered => {
                tracing::debug!(%webhook, attempt, "alert webhook delivered");
                return true;
            }
            Attempt::GiveUp(error) => {
                tracing::warn!(%webhook, attempt, %error, "alert webhook refused the alerts");
                return false;
            }
            Attempt::Retry(error) if attempt < policy.attempts => {
                tracing::warn!(%webhook, attempt, %error, retry_in = ?pause, "alert webhook failed");
                counts.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            Attempt::Retry(error) => {
                tracing::warn!(%webhook, attempt, %error, "alert webhook failed: giving up");
            }
        }
    }
    false
}

async fn post(client: &Client<HttpConnector, Full<Bytes>>, url: &str, body: Bytes) -> Attempt {
    // Errors below name neither the URL nor its parts: it is a secret.
    let Ok(uri) = url.parse::<Uri>() else {
        return Attempt::GiveUp("not a URL".into());
    };
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "perf-alerts")
        .body(Full::new(body));
    let request = match request {
        Ok(request) => request,
        Err(_) => return Attempt::GiveUp("not a valid request URL".into()),
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Attempt::Delivered
            } else if status.is_server_error() || status.as_u16() == 429 {
                Attempt::Retry(format!("answered {status}"))
            } else {
                Attempt::GiveUp(format!("answered {status}"))
            }
        }
        Err(error) => {
            let cause = std::error::Error::source(&error)
                .map(|source| format!(": {source}"))
                .unwrap_or_default();
            Attempt::Retry(format!("{error}{cause}"))
        }
    }
}

/// The transitions as Alertmanager's v2 `POST /api/v2/alerts` takes them: a resolved alert
/// has its `endsAt`, a firing one none. `status`, `value` and `threshold` are annotations,
/// for receivers other than Alertmanager.
pub(crate) fn payload(transitions: &[Transition]) -> Value {
    Value::Array(
        transitions
            .iter()
            .map(|transition| {
                let alert = &transition.alert;
                let status = match transition.status {
                    AlertStatus::Firing => "firing",
                    AlertStatus::Resolved => "resolved",
                };
                let mut entry = json!({
                    "labels": {
                        "alertname": alert.kind.as_str(),
                        "severity": alert.severity.as_str(),
                    },
                    "annotations": {
                        "summary": alert.message,
                        "status": status,
                        "value": alert.observed.to_string(),
                        "threshold": alert.threshold.to_string(),
                    },
                    "startsAt": rfc3339(transition.starts_at),
                });
                if let Some(ends_at) = transition.ends_at {
                    entry["endsAt"] = rfc3339(ends_at).into();
                }
                entry
            })
            .collect(),
    )
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::alerts::{Alert, AlertKind, Severity};

    fn transition(status: AlertStatus) -> Transition {
        let starts_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Transition {
            status,
            alert: Alert {
                kind: AlertKind::MemoryUsage,
                severity: Severity::Critical,
                message: "memory at 95% of its cgroup limit".into(),
                observed: 0.95,
                threshold: 0.8,
            },
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then(|| starts_at + Duration::from_secs(60)),
        }
    }

    /// A one-connection-at-a-time HTTP server answering each request with the next of
    /// `statuses` (the last one repeated), handing over each request's body.
    async fn server(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (bodies, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for i in 0.. {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let body = read_request(&mut socket).await;
                let _ = bodies.send(body);
                let status = statuses[i.min(statuses.len() - 1)];
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (
            format!("http://{address}/api/v2/alerts?token=s3cret"),
            received,
        )
    }

    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(read) = socket.read(&mut chunk).await {
            if read == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&bytes);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    return text[end + 4..end + 4 + length].to_owned();
                }
            }
        }
        String::new()
    }

    fn quick() -> Policy {
        Policy {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn the_redacted_url_keeps_only_scheme_and_host() {
        assert_eq!(
            redact("http://user:pw@hooks.example:8080/t/0123secret?key=abc"),
            "http://hooks.example:8080/***"
        );
        assert_eq!(redact("not a url"), "***");
    }

    #[test]
    fn the_payload_is_alertmanagers() {
        let payload = payload(&[
            transition(AlertStatus::Firing),
            transition(AlertStatus::Resolved),
        ]);
        let firing = &payload[0];
        assert_eq!(firing["labels"]["alertname"], "memory_usage");
        assert_eq!(firing["labels"]["severity"], "critical");
        assert_eq!(
            firing["annotations"]["summary"],
            "memory at 95% of its cgroup limit"
        );
        assert_eq!(firing["annotations"]["status"], "firing");
        assert_eq!(firing["startsAt"], "2027-01-15T08:00:00Z");
        assert!(firing.get("endsAt").is_none());
        let resolved = &payload[1];
        assert_eq!(resolved["annotations"]["status"], "resolved");
        assert_eq!(resolved["endsAt"], "2027-01-15T08:01:00Z");
    }

    #[tokio::test]
    async fn a_batch_reaches_a_real_server() {
        let (url, mut received) = server(vec![200]).await;
        let outbox = Outbox::default();
        let sender = tokio::spawn(outbox.open(quick()));
        outbox.send(&Secret::new(url), vec![transition(AlertStatus::Firing)]);
        let body = received.recv().await.expect("a request");
        let sent: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(sent, payload(&[transition(AlertStatus::Firing)]));
        drop(outbox);
        sender.await.expect("ends with its outbox");
    }

    #[tokio::test]
    async fn retries_on_500_are_bounded_then_counted_as_failed() {
        let (url, mut received) = server(vec![500]).await;
        let outbox = Outbox::default();
        let sender = tokio::spawn(outbox.open(quick()));
        outbox.send(&Secret::new(url), vec![transition(AlertStatus::Firing)]);
        drop(outbox.queue.lock().take());
        sender.await.expect("ended");
        let mut attempts = 0;
        while received.try_recv().is_ok() {
            attempts += 1;
        }
        assert_eq!(attempts, 3, "the first and two retries, no more");
        let stats = outbox.stats();
        assert_eq!((stats.sent, stats.failed, stats.retries), (0, 1, 2));
    }

    #[tokio::test]
    async fn a_500_then_a_202_is_delivered() {
        let (url, _received) = server(vec![500, 202]).await;
        let outbox = Outbox::default();
        let sender = tokio::spawn(outbox.open(quick()));
        outbox.send(&Secret::new(url), vec![transition(AlertStatus::Resolved)]);
        drop(outbox.queue.lock().take());
        sender.await.expect("ended");
        let stats = outbox.stats();
        assert_eq!((stats.sent, stats.failed, stats.retries), (1, 0, 1));
    }

    #[tokio::test]
    async fn a_4xx_is_not_retried() {
        let (url, _received) = server(vec![400]).await;
        let outbox = Outbox::default();
        let sender = tokio::spawn(outbox.open(quick()));
        outbox.send(&Secret::new(url), vec![transition(AlertStatus::Firing)]);
        drop(outbox.queue.lock().take());
        sender.await.expect("ended");
        let stats = outbox.stats();
        assert_eq!((stats.sent, stats.failed, stats.retries), (0, 1, 0));
    }

    #[tokio::test]
    async fn a_dead_receiver_costs_bounded_attempts() {
        // Bound, then closed: nothing listens there.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("address");
        let outbox = Outbox::default();
        let sender = tokio::spawn(outbox.open(quick()));
        outbox.send(
            &Secret::new(format!("http://{address}/hook")),
            vec![transition(AlertStatus::Firing)],
        );
        drop(outbox.queue.lock().take());
        sender.await.expect("ended");
        let stats = outbox.stats();
        assert_eq!((stats.failed, stats.retries), (1, 2));
    }

    #[test]
    fn a_full_or_closed_queue_drops_and_counts_without_waiting() {
        let outbox = Outbox::default();
        let url = Secret::new("http://127.0.0.1:9/hook");
        // No loop running: dropped.
        outbox.send(&url, vec![transition(AlertStatus::Firing)]);
        assert_eq!(outbox.stats().dropped, 1);
        // A loop opened but never polled: the queue fills, then drops.
        let _never_run = outbox.open(quick());
        for _ in 0..QUEUE + 5 {
            outbox.send(&url, vec![transition(AlertStatus::Firing)]);
        }
        assert_eq!(outbox.stats().dropped, 1 + 5);
        // Nothing to send is not a batch.
        outbox.send(&url, Vec::new());
        assert_eq!(outbox.stats().dropped, 6);
    }
}
