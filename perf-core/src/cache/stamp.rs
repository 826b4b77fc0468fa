//! An entry's lifetime: fresh, then due for refresh, then stale (fail-safe), then gone.
//!
//! ```text
//! written ── fresh ──> fresh_until ── refresh due ──> expires_at ── stale ──> stale_until
//! ```
//!
//! Hits check `fresh_until` alone, so eager refresh and fail-safe cost the hit path nothing:
//! without them `fresh_until == expires_at == stale_until`. Reads past `fresh_until` take the
//! slower path that tells the later ages apart.

use std::time::Duration;

use quanta::Instant;

use super::{clock::ExpiryClock, codec::UnixTimes, options::Policy};

/// When a local copy ages, and whether it copies a remote-tier value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Served as is until then; a load past it starts a refresh.
    pub(crate) fresh_until: Instant,
    /// The end of the TTL: `get` misses after it.
    pub(crate) expires_at: Instant,
    /// The end of the fail-safe period: the entry is kept (as stale) until then.
    pub(crate) stale_until: Instant,
    pub(crate) shared: bool,
}

/// How old a found entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    Fresh,
    /// Within its TTL, past the eager refresh point.
    RefreshDue,
    /// Past its TTL, kept by fail-safe.
    Stale,
}

impl Age {
    /// Whether `get` (which knows nothing of fail-safe) may return it.
    pub(crate) fn is_live(self) -> bool {
        self != Age::Stale
    }
}

impl Stamp {
    /// `None` once the entry is past every deadline.
    #[inline]
    pub(crate) fn age(&self, clock: &ExpiryClock) -> Option<Age> {
        if clock.is_live(self.fresh_until) {
            Some(Age::Fresh)
        } else if clock.is_live(self.expires_at) {
            Some(Age::RefreshDue)
        } else if clock.is_live(self.stale_until) {
            Some(Age::Stale)
        } else {
            None
        }
    }

    /// Whether the entry can still be served in some age.
    pub(crate) fn is_kept(&self, clock: &ExpiryClock) -> bool {
        clock.is_live(self.stale_until)
    }

    /// The same lifetime as Unix times, for the value's header.
    pub(crate) fn unix_times(&self, now: Instant) -> UnixTimes {
        let left = |at: Instant| at.saturating_duration_since(now);
        UnixTimes::after(
            left(self.fresh_until),
            left(self.expires_at),
            left(self.stale_until),
        )
    }

    /// A lifetime read from a value's header, from `now`; `None` when it is over.
    pub(crate) fn from_unix(times: UnixTimes, now: Instant, shared: bool) -> Option<Self> {
        use super::codec::remaining_until;
        let stale_left = remaining_until(times.stale_until);
        if stale_left.is_zero() {
            return None;
        }
        let at = |left: Duration| now.checked_add(left);
        Some(Self {
            fresh_until: at(remaining_until(times.fresh_until))?,
            expires_at: at(remaining_until(times.expires_at))?,
            stale_until: at(stale_left)?,
            shared,
        })
    }

    /// A stale entry served after a failed load, fresh again for `throttle` so that the next
    /// calls do not hammer the source; it stays until its own end or the throttle's.
    pub(crate) fn rearmed(&self, now: Instant, throttle: Duration) -> Self {
        let until = later(now, throttle);
        Self {
            fresh_until: until,
            expires_at: until,
            stale_until: self.stale_until.max(until),
            shared: self.shared,
        }
    }
}

impl Stamp {
    /// A live entry whose refresh failed: served as it is, without another refresh, until
    /// `throttle` from now or its expiry, whichever comes first.
    pub(crate) fn refresh_delayed(&self, now: Instant, throttle: Duration) -> Self {
        Self {
            fresh_until: later(now, throttle).min(self.expires_at),
            ..*self
        }
    }
}

/// `now + after`, for a duration a user chose: capped rather than overflowing.
fn later(now: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(after.min(CENTURY)).unwrap_or(now)
}

/// The lifetime of a value written now under `policy`, with its TTL already jittered;
/// `None` when an instant would overflow.
pub(crate) fn for_write(now: Instant, ttl: Duration, policy: &Policy) -> Option<Stamp> {
    let expires_at = now.checked_add(ttl)?;
    let fresh_until = if policy.eager_refresh > 0.0 {
        now.checked_add(ttl.mul_f64(policy.eager_refresh))?
    } else {
        expires_at
    };
    let stale_until = match policy.fail_safe {
        Some(extra) => expires_at.checked_add(extra)?,
        None => expires_at,
    };
    Some(Stamp {
        fresh_until,
        expires_at,
        stale_until,
        shared: false,
    })
}
