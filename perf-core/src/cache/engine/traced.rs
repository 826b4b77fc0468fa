//! The remote tier as the engine holds it: each call in a `perf.cache.remote` span while
//! profiling is on. Off, a call goes straight to the tier, with no span and no extra future.

use std::{fmt, sync::Arc, time::Duration};

use tracing::{Instrument, Span, info_span};

use crate::{
    cache::{BoxFuture, InvalidationSink, RemoteTier},
    error::RemoteError,
    profiling::{Profiling, span_key},
};

pub(super) struct Traced {
    tier: Arc<dyn RemoteTier>,
    profiling: Profiling,
}

impl Traced {
    pub(super) fn wrap(tier: Arc<dyn RemoteTier>, profiling: Profiling) -> Arc<dyn RemoteTier> {
        Arc::new(Self { tier, profiling })
    }

    /// `call`, in the span `span` makes when profiling is on.
    fn traced<'a, T: 'a>(
        &self,
        call: BoxFuture<'a, T>,
        span: impl FnOnce() -> Span,
    ) -> BoxFuture<'a, T> {
        if !self.profiling.is_on() {
            return call;
        }
        Box::pin(call.instrument(span()))
    }
}

/// The span of one call on one key (or prefix).
fn keyed(op: &'static str, key: &str) -> Span {
    info_span!("perf.cache.remote", op, key = span_key(key))
}

impl fmt::Debug for Traced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tier.fmt(f)
    }
}

impl RemoteTier for Traced {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.traced(self.tier.get(key), || keyed("get", key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.traced(self.tier.set(key, value, ttl), || keyed("set", key))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.traced(self.tier.delete(key), || keyed("delete", key))
    }

    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.traced(self.tier.invalidate_prefix(prefix), || {
            keyed("invalidate_prefix", prefix)
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        self.traced(self.tier.clear(), || {
            info_span!("perf.cache.remote", op = "clear")
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, RemoteError>> {
        self.traced(self.tier.get_many(keys), || {
            info_span!("perf.cache.remote", op = "get_many", keys = keys.len())
        })
    }

    fn used_bytes(&self) -> BoxFuture<'_, Result<Option<u64>, RemoteError>> {
        self.traced(self.tier.used_bytes(), || {
            info_span!("perf.cache.remote", op = "used_bytes")
        })
    }

    fn replays_failed_changes(&self) -> bool {
        self.tier.replays_failed_changes()
    }

    fn namespace(&self) -> &str {
        self.tier.namespace()
    }

    fn subscribe(&self, sink: InvalidationSink) {
        self.tier.subscribe(sink);
    }
}
