//! Expiry time that is exact where it matters and cheap on the hit path.
//!
//! Reading the CPU's clock on every hit costs more than its few nanoseconds suggest: measured
//! here (KVM on AMD EPYC), a TSC read keeps the processor from overlapping one lookup's cache
//! misses with the next, and made a memory-bound L1 hit about a quarter slower. So a hit
//! compares its entry's deadline with a coarse clock that a background thread refreshes every
//! [`TICK`], and reads the precise clock only when the deadline is within [`GUARD`] of that
//! coarse time. An entry could outlive its TTL only if that thread were starved of CPU for
//! longer than [`GUARD`]; with a mock clock (tests), every check is exact.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use quanta::{Clock, Instant};

/// How often the coarse clock is refreshed.
const TICK: Duration = Duration::from_millis(10);
/// Deadlines closer than this to the coarse time are checked against the precise clock.
const GUARD: Duration = Duration::from_secs(1);

/// The cache's clock.
#[derive(Debug, Clone)]
pub(crate) struct ExpiryClock {
    precise: Clock,
    coarse: Option<&'static Coarse>,
}

/// A time at most [`TICK`] (plus scheduling delay) behind the precise clock, never ahead.
#[derive(Debug)]
struct Coarse {
    base: Instant,
    nanos_since_base: AtomicU64,
}

impl Coarse {
    fn recent(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos_since_base.load(Ordering::Acquire))
    }
}

/// The process's one coarse clock and the thread that keeps it; `None` if no thread could be
/// started, in which case every check reads the precise clock.
fn coarse() -> Option<&'static Coarse> {
    static COARSE: OnceLock<Option<&'static Coarse>> = OnceLock::new();
    *COARSE.get_or_init(|| {
        let clock = Clock::new();
        let coarse: &'static Coarse = Box::leak(Box::new(Coarse {
            base: clock.now(),
            nanos_since_base: AtomicU64::new(0),
        }));
        let spawned = std::thread::Builder::new()
            .name("perf-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let since = clock.now().saturating_duration_since(coarse.base);
                    let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
                    coarse.nanos_since_base.store(nanos, Ordering::Release);
                }
            });
        spawned.ok().map(|_| coarse)
    })
}

impl ExpiryClock {
    /// The real clock, with the coarse fast path.
    pub(crate) fn real() -> Self {
        Self {
            precise: Clock::new(),
            coarse: coarse(),
        }
    }

    /// A clock given by the user (a mock in tests): every check reads it.
    pub(crate) fn exact(clock: Clock) -> Self {
        Self {
            precise: clock,
            coarse: None,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.precise.now()
    }

    /// `expires_at` as a deadline that [`before_coarse_deadline`](Self::before_coarse_deadline)
    /// checks with one load; 0 (never before it) when there is no coarse clock.
    pub(crate) fn coarse_deadline(&self, expires_at: Instant) -> u64 {
        let Some(coarse) = self.coarse else { return 0 };
        let Some(guarded) = expires_at.checked_sub(GUARD) else {
            return 0;
        };
        let since_base = guarded.saturating_duration_since(coarse.base);
        u64::try_from(since_base.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a deadline from [`coarse_deadline`](Self::coarse_deadline) is certainly still
    /// ahead; when false, [`is_live`](Self::is_live) decides.
    #[inline]
    pub(crate) fn before_coarse_deadline(&self, deadline: u64) -> bool {
        self.coarse
            .is_some_and(|coarse| coarse.nanos_since_base.load(Ordering::Acquire) < deadline)
    }

    /// Whether a deadline is still ahead.
    #[inline]
    pub(crate) fn is_live(&self, expires_at: Instant) -> bool {
        if let Some(coarse) = self.coarse
            && expires_at > coarse.recent() + GUARD
        {
            return true;
        }
        expires_at > self.precise.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_runs_and_never_leads() {
        let clock = ExpiryClock::real();
        let coarse = clock.coarse.expect("the clock thread started");
        let first = coarse.recent();
        std::thread::sleep(TICK * 5);
        let second = coarse.recent();
        assert!(second > first, "the coarse clock advances");
        assert!(second <= clock.now(), "and stays behind the precise clock");
    }

    #[test]
    fn deadlines_far_ahead_are_live_and_past_ones_are_not() {
        let clock = ExpiryClock::real();
        let now = clock.now();
        assert!(clock.is_live(now + Duration::from_secs(3600)));
        assert!(
            clock.is_live(now + Duration::from_millis(500)),
            "near: checked exactly"
        );
        assert!(!clock.is_live(now));
        assert!(!clock.is_live(clock.now()));
    }

    #[test]
    fn coarse_deadlines_agree_with_exact_checks() {
        let clock = ExpiryClock::real();
        let now = clock.now();
        let far = now + Duration::from_secs(3600);
        assert!(clock.before_coarse_deadline(clock.coarse_deadline(far)));
        for near in [now, now + GUARD / 2, now - Duration::from_secs(5)] {
            assert!(
                !clock.before_coarse_deadline(clock.coarse_deadline(near)),
                "within the guard or past: left to the exact check"
            );
        }
        let (mock, _) = Clock::mock();
        let exact = ExpiryClock::exact(mock);
        assert!(!exact.before_coarse_deadline(exact.coarse_deadline(far)));
    }

    #[test]
    fn a_mock_clock_decides_every_check() {
        let (mock_clock, mock) = Clock::mock();
        let clock = ExpiryClock::exact(mock_clock);
        let deadline = clock.now() + Duration::from_secs(10);
        mock.increment(Duration::from_secs(10) - Duration::from_nanos(1));
        assert!(clock.is_live(deadline));
        mock.increment(Duration::from_nanos(1));
        assert!(!clock.is_live(deadline));
    }
}
