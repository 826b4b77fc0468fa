//! Invalidations between instances, over Redis pub/sub: one channel per namespace, key-only
//! messages, batched, tagged with the sender so that it ignores its own.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_redis::redis;
use futures_util::StreamExt;
use perf_core::cache::{Invalidation, InvalidationSink};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connection::Connections;

use perf_core::metrics::{
    CACHE_BACKPLANE_MESSAGES_TOTAL as BACKPLANE_MESSAGES_TOTAL, labels::DIRECTION,
};

use crate::pending::{Change, Pending, Snapshot};

/// At most this many changes go in one message.
const MAX_BATCH: usize = 512;

/// One pub/sub message: everything the sender changed since its previous message.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Message {
    sender: u64,
    keys: Vec<String>,
    prefixes: Vec<String>,
    all: bool,
}

impl Message {
    fn add(&mut self, change: Change) {
        match change {
            Change::Key(key) => self.keys.push(key),
            Change::Prefix(prefix) => self.prefixes.push(prefix),
            Change::All => self.all = true,
        }
    }

    fn encode(&self) -> Option<Vec<u8>> {
        // Strings, integers and a bool into a Vec: this cannot fail, but is not unwrapped.
        rmp_serde::to_vec(self).ok()
    }

    fn invalidations(self) -> Vec<Invalidation> {
        if self.all {
            return vec![Invalidation::All];
        }
        let mut out: Vec<_> = self
            .prefixes
            .into_iter()
            .map(Invalidation::Prefix)
            .collect();
        if !self.keys.is_empty() {
            out.push(Invalidation::Keys(self.keys));
        }
        out
    }
}

/// Counters and state, shared by the tier and its two tasks.
#[derive(Debug, Default)]
pub(crate) struct BackplaneState {
    pub(crate) subscribed: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) resubscriptions: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    /// Server-assisted invalidation: the tracking connection is up.
    pub(crate) tracking: AtomicBool,
    /// Invalidations Redis reported to the tracking connection.
    pub(crate) tracked: AtomicU64,
    pub(crate) tracking_restarts: AtomicU64,
}

/// Sends this instance's changes in batches: whatever queued up while the previous message
/// was being published goes out together, so that a burst costs few messages and a lone
/// change goes out at once. A batch that is not published waits in `pending` for the
/// tier's replay.
pub(crate) async fn publish_loop(
    mut changes: mpsc::UnboundedReceiver<Change>,
    pool: Connections,
    channel: String,
    sender: u64,
    timeout: Duration,
    state: Arc<BackplaneState>,
    pending: Arc<Pending>,
) {
    let mut batch = Vec::new();
    while changes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut message = Message {
            sender,
            ..Message::default()
        };
        for change in &batch {
            message.add(change.clone());
        }
        // A cluster delivers a PUBLISH sent to any node to every node.
        let publish = async {
            let payload = message.encode()?;
            let cmd = redis::cmd("PUBLISH").arg(&channel).arg(payload).clone();
            pool.query::<i64>(&cmd).await.ok()
        };
        let published = matches!(tokio::time::timeout(timeout, publish).await, Ok(Some(_)));
        if published {
            state.sent.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(perf_core::metrics::name(BACKPLANE_MESSAGES_TOTAL), DIRECTION => "sent").increment(1);
            batch.clear();
        } else {
            state.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%channel, "backplane message not published; kept for the replay");
            for change in batch.drain(..) {
                pending.announce_later(change);
            }
        }
    }
}

/// The messages that announce a replay's changes, at most [`MAX_BATCH`] keys each.
pub(crate) fn replay_messages(sender: u64, snapshot: &Snapshot) -> Vec<Vec<u8>> {
    let (remove, announce) = (&snapshot.remove, &snapshot.announce);
    let message = |keys: &[&String], prefixes: Vec<String>, all: bool| Message {
        sender,
        keys: keys.iter().map(|key| (*key).clone()).collect(),
        prefixes,
        all,
    };
    let messages = if remove.all.is_some() || announce.all.is_some() {
        vec![message(&[], Vec::new(), true)]
    } else {
        let keys: Vec<&String> = remove.keys.keys().chain(announce.keys.keys()).collect();
        let prefixes: Vec<String> = remove
            .prefixes
            .keys()
            .chain(announce.prefixes.keys())
            .cloned()
            .collect();
        let mut messages = vec![message(&[], prefixes, false)];
        messages.extend(
            keys.chunks(MAX_BATCH)
                .map(|keys| message(keys, Vec::new(), false)),
        );
        messages.retain(|m| !m.keys.is_empty() || !m.prefixes.is_empty());
        messages
    };
    messages.iter().filter_map(Message::encode).collect()
}

/// A listener's connections to Redis, made again whenever one drops (the backplane's
/// subscription, the tracking connection): attempts back off from 50 ms to 2 s, and every
/// connection is followed by an [`Invalidation::Resync`], since whatever changed while nobody
/// listened went unheard.
pub(crate) struct Reconnects {
    /// Names the listener in log lines.
    what: &'static str,
    backoff: Duration,
    first: bool,
}

impl Reconnects {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            backoff: Duration::from_millis(50),
            first: true,
        }
    }

    /// `connect` under `timeout`; after a failure, waits out the backoff and gives `None`.
    pub(crate) async fn attempt<T>(
        &mut self,
        timeout: Duration,
        connect: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Option<T> {
        let what = self.what;
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connection)) => {
                self.backoff = Duration::from_millis(50);
                return Some(connection);
            }
            Ok(Err(error)) => tracing::debug!(%error, what, "connection failed; retrying"),
            Err(_) => tracing::debug!(what, "connection timed out; retrying"),
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        None
    }

    /// A connection is up: resyncs `sink`, then counts a reconnection in `restarts` (after, so
    /// that whoever sees the count also sees the resync's effect).
    pub(crate) fn connected(&mut self, sink: &InvalidationSink, restarts: &AtomicU64) {
        if !self.first {
            let what = self.what;
            tracing::info!(what, "reconnected; dropping local copies of shared values");
        }
        sink(Invalidation::Resync);
        if !self.first {
            restarts.fetch_add(1, Ordering::Release);
        }
        self.first = false;
    }
}

/// Listens for other instances' changes, for as long as the tier lives. Every (re)subscribe
/// is followed by a [`Invalidation::Resync`]: whatever was published while we were not
/// listening is lost, so local copies of shared values are dropped.
///
/// `clients` are the nodes to subscribe on (one for a server, the given nodes of a cluster,
/// where any node hears every message): a failed or dropped subscription moves to the next.
pub(crate) async fn subscribe_loop(
    clients: Vec<redis::Client>,
    channel: String,
    own_id: u64,
    timeout: Duration,
    sink: InvalidationSink,
    state: Arc<BackplaneState>,
) {
    let mut reconnects = Reconnects::new("backplane subscription");
    for client in clients.iter().cycle() {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok(pubsub)
        };
        let Some(mut pubsub) = reconnects.attempt(timeout, subscribe).await else {
            continue;
        };
        reconnects.connected(&sink, &state.resubscriptions);
        state.subscribed.store(true, Ordering::Release);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(message) = rmp_serde::from_slice::<Message>(message.get_payload_bytes()) else {
                tracing::debug!(%channel, "undecodable backplane message ignored");
                continue;
            };
            if message.sender == own_id {
                continue;
            }
            for invalidation in message.invalidations() {
                sink(invalidation);
            }
            // Counted once applied, so whoever sees the count also sees its effect.
            state.received.fetch_add(1, Ordering::Release);
            metrics::counter!(perf_core::metrics::name(BACKPLANE_MESSAGES_TOTAL), DIRECTION => "received").increment(1);
        }
        state.subscribed.store(false, Ordering::Release);
        tracing::warn!(%channel, "backplane subscription dropped; resubscribing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_turns_into_invalidations() {
        let mut message = Message {
            sender: 7,
            ..Message::default()
        };
        message.add(Change::Key("a".into()));
        message.add(Change::Prefix("user:".into()));
        message.add(Change::Key("b\nwith newline".into()));
        let bytes = rmp_serde::to_vec(&message).expect("encodes");
        let back: Message = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, message);
        assert_eq!(
            back.invalidations(),
            [
                Invalidation::Prefix("user:".into()),
                Invalidation::Keys(vec!["a".into(), "b\nwith newline".into()]),
            ]
        );
        let mut cleared = Message::default();
        cleared.add(Change::Key("a".into()));
        cleared.add(Change::All);
        assert_eq!(cleared.invalidations(), [Invalidation::All]);
    }

    #[test]
    fn a_replay_announces_removals_and_announcements_in_bounded_messages() {
        let pending = Pending::new(10_000);
        for i in 0..MAX_BATCH + 1 {
            pending.remove_later(Change::Key(format!("k{i}")));
        }
        pending.announce_later(Change::Key("written".into()));
        pending.remove_later(Change::Prefix("user:".into()));
        let snapshot = pending.snapshot().expect("waits");
        let messages: Vec<Message> = replay_messages(3, &snapshot)
            .iter()
            .map(|bytes| rmp_serde::from_slice(bytes).expect("decodes"))
            .collect();
        assert_eq!(messages.len(), 3, "prefixes, then keys in two batches");
        assert_eq!(messages[0].prefixes, ["user:"]);
        let keys: usize = messages.iter().map(|m| m.keys.len()).sum();
        assert_eq!(keys, MAX_BATCH + 2);
        assert!(messages.iter().all(|m| m.sender == 3 && !m.all));
        assert!(
            messages
                .iter()
                .any(|m| m.keys.contains(&"written".to_owned()))
        );

        pending.announce_later(Change::All);
        let snapshot = pending.snapshot().expect("waits");
        let all: Vec<Message> = replay_messages(3, &snapshot)
            .iter()
            .map(|bytes| rmp_serde::from_slice(bytes).expect("decodes"))
            .collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].all, "everything subsumes the rest");
    }
}
