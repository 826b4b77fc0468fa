//! Server-assisted invalidation: Redis itself reports every change to the namespace's keys,
//! whoever made it (perf or not), through client-side caching's broadcast mode.
//!
//! One dedicated RESP3 connection says `CLIENT TRACKING ON BCAST PREFIX {namespace}:` and
//! receives the server's `invalidate` pushes on itself. (RESP2 would need a second connection,
//! subscribed to `__redis__:invalidate`, whose `CLIENT ID` the tracking connection redirects
//! to; redis-rs's pub/sub connection cannot send `CLIENT ID` before it subscribes, and RESP2
//! forbids it after. RESP3 needs no redirect: the connection that tracks is the one told.)

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use deadpool_redis::redis::{
    self, AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value,
};
use perf_core::cache::{Invalidation, InvalidationSink};
use tokio::sync::mpsc;

use crate::{
    Error,
    backplane::{BackplaneState, Reconnects},
};

/// How often an idle tracking connection is checked.
const PING_EVERY: Duration = Duration::from_secs(5);

/// A client like `client` that speaks RESP3, for the tracking connection.
pub(crate) fn resp3_client(client: &redis::Client) -> Result<redis::Client, Error> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(Error::config_from)
}

/// What one push asks of the cache: keys under `prefix` (stripped of it), or a resync when
/// Redis flushed everything (a nil payload). Other pushes, and keys outside the prefix, are
/// ignored.
fn invalidation(push: PushInfo, prefix: &str) -> Option<Invalidation> {
    if push.kind != PushKind::Invalidate {
        return None;
    }
    match push.data.into_iter().next() {
        Some(Value::Array(names)) => {
            let keys: Vec<String> = names
                .into_iter()
                .filter_map(|name| match name {
                    Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
                    Value::SimpleString(text) => Some(text),
                    _ => None,
                })
                .filter_map(|name| name.strip_prefix(prefix).map(str::to_owned))
                .collect();
            (!keys.is_empty()).then_some(Invalidation::Keys(keys))
        }
        // FLUSHALL / FLUSHDB: the server says nothing of which keys.
        Some(Value::Nil) | None => Some(Invalidation::Resync),
        Some(_) => None,
    }
}

/// Keeps a tracking connection open for as long as the tier lives, delivering what Redis
/// reports. Every (re)connection is followed by an [`Invalidation::Resync`]: whatever changed
/// while nobody was tracking went unreported.
pub(crate) async fn tracking_loop(
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    sink: InvalidationSink,
    state: Arc<BackplaneState>,
) {
    let mut reconnects = Reconnects::new("tracking connection");
    loop {
        let (pushes, mut received) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(pushes);
        let track = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(&prefix)
                .query_async::<()>(&mut conn)
                .await?;
            Ok(conn)
        };
        // The connection lives as long as the tracking.
        let Some(mut conn) = reconnects.attempt(timeout, track).await else {
            continue;
        };
        reconnects.connected(&sink, &state.tracking_restarts);
        state.tracking.store(true, Ordering::Release);
        // A connection that died silently (no reset) would never say so: a PING now and
        // then finds out.
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let push = tokio::select! {
                push = received.recv() => push,
                _ = ping.tick() => {
                    let cmd = redis::cmd("PING");
                    let pong = cmd.query_async::<()>(&mut conn);
                    match tokio::time::timeout(timeout, pong).await {
                        Ok(Ok(())) => continue,
                        _ => None,
                    }
                }
            };
            let Some(push) = push else { break };
            if push.kind == PushKind::Disconnection {
                break;
            }
            if let Some(invalidation) = invalidation(push, &prefix) {
                sink(invalidation);
                state.tracked.fetch_add(1, Ordering::Release);
            }
        }
        state.tracking.store(false, Ordering::Release);
        tracing::warn!(%prefix, "tracking connection dropped; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, data: Vec<Value>) -> PushInfo {
        PushInfo { kind, data }
    }

    #[test]
    fn a_push_names_keys_under_the_prefix_or_asks_for_a_resync() {
        let names = Value::Array(vec![
            Value::BulkString(b"ns:a".to_vec()),
            Value::BulkString(b"other:b".to_vec()),
            Value::BulkString(b"ns:user:1".to_vec()),
        ]);
        assert_eq!(
            invalidation(push(PushKind::Invalidate, vec![names]), "ns:"),
            Some(Invalidation::Keys(vec!["a".into(), "user:1".into()]))
        );
        assert_eq!(
            invalidation(push(PushKind::Invalidate, vec![Value::Nil]), "ns:"),
            Some(Invalidation::Resync)
        );
        let elsewhere = Value::Array(vec![Value::BulkString(b"other:b".to_vec())]);
        assert_eq!(
            invalidation(push(PushKind::Invalidate, vec![elsewhere]), "ns:"),
            None
        );
        assert_eq!(
            invalidation(push(PushKind::Message, vec![Value::Nil]), "ns:"),
            None
        );
    }
}
