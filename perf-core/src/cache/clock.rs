//! Expiry time that is exact where it matters and cheap on the hit path.
//!
//! Reading the CPU's clock on every hit costs more than its few nanoseconds suggest: measured
//! here (KVM on AMD EPYC), a TSC read keeps the processor from overlapping one lookup's cache
//! misses with the next, and made a memory-bound L1 hit about a quarter slower. So a hit
//! compares its entry's deadline with a coarse clock that a background thread refreshes every
//! [`TICK`], and reads the precise clock only when the deadline is within [`GUARD`] of that
//! coarse time. An entry could outlive its TTL only if that thread were starved of CPU for
//! longer than [`GUARD`]; with a mock clock (tests), every check is exact.
//!
//! The thread (`perf-clock`) runs only while a cache with the real clock exists: every such
//! cache holds a lease on it, the last lease dropped stops and joins it, and the next cache
//! starts a new one (with its own base; each cache keeps the coarse clock it was built with).

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use parking_lot::Mutex;
use quanta::{Clock, Instant};

/// How often the coarse clock is refreshed.
const TICK: Duration = Duration::from_millis(10);
/// Deadlines closer than this to the coarse time are checked against the precise clock.
const GUARD: Duration = Duration::from_secs(1);

/// The cache's clock.
#[derive(Debug, Clone)]
pub(crate) struct ExpiryClock {
    precise: Clock,
    /// Read on every hit, so held directly rather than behind the lease.
    coarse: Option<Arc<Coarse>>,
    /// Keeps the thread that advances `coarse` running.
    _lease: Option<Arc<ClockThread>>,
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

/// The thread advancing one [`Coarse`]; dropping the last lease on it stops and joins it.
#[derive(Debug)]
struct ClockThread {
    coarse: Arc<Coarse>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    registry: &'static Registry,
}

impl Drop for ClockThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread holds no lease, so this never runs on it: joining cannot deadlock.
            let _ = thread.join();
            self.registry.running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Hands out leases on the one running clock thread, starting one when none runs.
#[derive(Debug)]
struct Registry {
    current: Mutex<Weak<ClockThread>>,
    /// Clock threads started and not yet joined.
    running: AtomicUsize,
}

/// The process's registry: every cache with the real clock shares its thread.
static REGISTRY: Registry = Registry::new();

impl Registry {
    const fn new() -> Self {
        Self {
            current: Mutex::new(Weak::new()),
            running: AtomicUsize::new(0),
        }
    }

    /// A lease on the running clock thread, starting one if none runs; `None` if no thread
    /// could be started, in which case every check reads the precise clock.
    fn lease(&'static self) -> Option<Arc<ClockThread>> {
        let mut current = self.current.lock();
        if let Some(running) = current.upgrade() {
            return Some(running);
        }
        let clock = Clock::new();
        let coarse = Arc::new(Coarse {
            base: clock.now(),
            nanos_since_base: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("perf-clock".into())
            .spawn({
                let (coarse, stop) = (Arc::clone(&coarse), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Acquire) {
                        // Woken early to stop (or spuriously: an early tick does no harm).
                        std::thread::park_timeout(TICK);
                        let since = clock.now().saturating_duration_since(coarse.base);
                        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
                        coarse.nanos_since_base.store(nanos, Ordering::Release);
                    }
                }
            })
            .ok()?;
        self.running.fetch_add(1, Ordering::AcqRel);
        let lease = Arc::new(ClockThread {
            coarse,
            stop,
            thread: Some(thread),
            registry: self,
        });
        *current = Arc::downgrade(&lease);
        Some(lease)
    }
}

impl ExpiryClock {
    /// The real clock, with the coarse fast path.
    pub(crate) fn real() -> Self {
        Self::leased_from(&REGISTRY)
    }

    fn leased_from(registry: &'static Registry) -> Self {
        let lease = registry.lease();
        Self {
            precise: Clock::new(),
            coarse: lease.as_ref().map(|lease| Arc::clone(&lease.coarse)),
            _lease: lease,
        }
    }

    /// A clock given by the user (a mock in tests): every check reads it.
    pub(crate) fn exact(clock: Clock) -> Self {
        Self {
            precise: clock,
            coarse: None,
            _lease: None,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.precise.now()
    }

    /// `expires_at` as a deadline that [`before_coarse_deadline`](Self::before_coarse_deadline)
    /// checks with one load; 0 (never before it) when there is no coarse clock.
    pub(crate) fn coarse_deadline(&self, expires_at: Instant) -> u64 {
        let Some(coarse) = &self.coarse else {
            return 0;
        };
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
            .as_ref()
            .is_some_and(|coarse| coarse.nanos_since_base.load(Ordering::Acquire) < deadline)
    }

    /// Whether a deadline is still ahead.
    #[inline]
    pub(crate) fn is_live(&self, expires_at: Instant) -> bool {
        if let Some(coarse) = &self.coarse
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

    /// Waits (ten seconds at most) for the thread to advance `coarse` past where it is now.
    fn wait_for_a_tick(coarse: &Coarse) -> Instant {
        let start = coarse.recent();
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = coarse.recent();
            if now > start {
                return now;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "the clock thread ticks"
            );
            std::thread::sleep(TICK / 10);
        }
    }

    /// A registry of its own, so that the other tests' caches do not hold its thread.
    fn registry() -> &'static Registry {
        Box::leak(Box::new(Registry::new()))
    }

    #[test]
    fn the_coarse_clock_runs_and_never_leads() {
        let clock = ExpiryClock::real();
        let coarse = clock.coarse.as_ref().expect("the clock thread started");
        let ticked = wait_for_a_tick(coarse);
        assert!(
            ticked <= clock.now(),
            "the coarse clock stays behind the precise one"
        );
    }

    #[test]
    fn the_thread_runs_while_a_clock_holds_it_and_starts_again_for_the_next() {
        let registry = registry();
        let first = ExpiryClock::leased_from(registry);
        let second = first.clone();
        let third = ExpiryClock::leased_from(registry);
        let coarse = first.coarse.clone().expect("the clock thread started");
        assert!(
            Arc::ptr_eq(&coarse, third.coarse.as_ref().expect("leased")),
            "one thread for every clock"
        );
        assert_eq!(registry.running.load(Ordering::Acquire), 1);

        drop((first, second));
        assert_eq!(
            registry.running.load(Ordering::Acquire),
            1,
            "third holds it"
        );
        wait_for_a_tick(&coarse);

        let ticks = Arc::downgrade(&coarse);
        drop((coarse, third));
        // The last lease joined the thread before its drop returned.
        assert_eq!(registry.running.load(Ordering::Acquire), 0);
        assert!(
            ticks.upgrade().is_none(),
            "nothing advances that clock any more"
        );

        let fourth = ExpiryClock::leased_from(registry);
        assert_eq!(registry.running.load(Ordering::Acquire), 1, "a new thread");
        wait_for_a_tick(fourth.coarse.as_ref().expect("the clock thread started"));
        drop(fourth);
        assert_eq!(registry.running.load(Ordering::Acquire), 0);
    }

    #[test]
    fn an_exact_clock_starts_no_thread() {
        let (mock, _) = Clock::mock();
        let exact = ExpiryClock::exact(mock);
        assert!(exact.coarse.is_none() && exact._lease.is_none());
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
