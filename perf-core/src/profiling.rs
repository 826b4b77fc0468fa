//! `profiling_enabled`: one switch per optimizer, shared by the components it built, that puts
//! their operations inside `tracing` spans for span-based profilers (tracing-flame,
//! tokio-console, OpenTelemetry).
//!
//! | span | around | fields |
//! |---|---|---|
//! | the operation's name | each `#[performance_monitor]` call | |
//! | `perf.cache.load` | a loader run by the get_or_load family or `#[cache_result]` | `key` |
//! | `perf.cache.remote` | a call to the remote tier (Redis) | `op`, `key` |
//! | `perf.task` | a managed task, from submission to its end | `id` |
//! | `perf.query` | a [`QueryTimer`](crate::query::QueryTimer)'s life | `query_type`, `rows`, `failed` |
//!
//! Hits in L1 and L2 get no span: a span costs more than the hit. Off, each check is one
//! relaxed load and no span is built.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tracing::Span;

/// The longest key a span carries; longer keys are cut (at a character boundary).
const MAX_SPAN_KEY_BYTES: usize = 64;

/// The switch: clones share it, so that a configuration change reaches every component.
#[derive(Debug, Clone, Default)]
pub(crate) struct Profiling(Arc<AtomicBool>);

impl Profiling {
    pub(crate) fn new(on: bool) -> Self {
        Self(Arc::new(AtomicBool::new(on)))
    }

    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The span `make` builds when profiling is on; otherwise a disabled span, without
    /// calling `make`.
    #[inline]
    pub(crate) fn span(&self, make: impl FnOnce() -> Span) -> Span {
        if self.is_on() { make() } else { Span::none() }
    }
}

/// `key` as a span carries it: at most [`MAX_SPAN_KEY_BYTES`].
pub(crate) fn span_key(key: &str) -> &str {
    if key.len() <= MAX_SPAN_KEY_BYTES {
        return key;
    }
    let mut end = MAX_SPAN_KEY_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_at_a_character_boundary() {
        assert_eq!(span_key("user:1"), "user:1");
        let long = "é".repeat(40); // 80 bytes
        let cut = span_key(&long);
        assert_eq!(cut.len(), 64);
        assert!(long.starts_with(cut));
        let odd = format!("a{}", "é".repeat(40)); // the 64th byte is inside a character
        assert_eq!(span_key(&odd).len(), 63);
    }

    #[test]
    fn clones_share_the_switch_and_off_builds_nothing() {
        let profiling = Profiling::new(false);
        let shared = profiling.clone();
        let mut built = false;
        assert!(
            profiling
                .span(|| {
                    built = true;
                    Span::none()
                })
                .is_none()
        );
        assert!(!built);
        shared.set(true);
        assert!(profiling.is_on());
    }
}
