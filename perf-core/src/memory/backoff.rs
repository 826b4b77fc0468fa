//! Backing off cleanups that give little back.
//!
//! When a process's own working set sits at or over its limit (the limit set just above the
//! baseline), a cleanup cannot bring usage down, yet pressure holds, so the monitor would clean
//! up every `memory_cleanup_min_interval`, each time shedding a share of the caches for a few
//! KiB. A cleanup not forced that frees little therefore backs off: the next one waits twice
//! as long as the last interval, up to [`MAX_BACKOFF_DOUBLINGS`] doublings, and while backed off
//! cleanups do not ask hooks to shed (they still sweep what expired and trim the allocator).
//! The memory alert is what tells the operator; the caches are left to do their job.
//!
//! "Little" is less than [`LITTLE_FREED_FRACTION`] of the limit, and never less than
//! [`LITTLE_FREED_MIN_BYTES`]. A cleanup freeing under 1% of the limit moves usage by under a
//! point, a fifth of the [`HYSTERESIS`](super::HYSTERESIS) band that usage must fall to leave
//! pressure; and under a MiB, an RSS change is within what other threads allocate meanwhile.
//! (Measured on the ads back end: 16 KiB freed with the limit just above an 11.7 MB RSS;
//! little by either figure, 1/64 of the MiB floor.)
//!
//! Back-off ends when a cleanup, forced or not, frees more than little, or when usage leaves
//! pressure.

use std::time::Duration;

/// A cleanup freeing less than this share of the limit frees little.
pub const LITTLE_FREED_FRACTION: f64 = 0.01;

/// A cleanup freeing less than this many bytes frees little, however small the limit.
pub const LITTLE_FREED_MIN_BYTES: u64 = 1 << 20;

/// The most times the spacing of cleanups not forced doubles: at most 32 ×
/// `memory_cleanup_min_interval` apart.
pub const MAX_BACKOFF_DOUBLINGS: u32 = 5;

/// Whether a cleanup that freed `freed_bytes`, against a limit of `limit_bytes`, freed little.
pub(crate) fn freed_little(freed_bytes: u64, limit_bytes: u64) -> bool {
    let fraction = (limit_bytes as f64 * LITTLE_FREED_FRACTION) as u64;
    freed_bytes < fraction.max(LITTLE_FREED_MIN_BYTES)
}

/// How many times the spacing of cleanups not forced has doubled; 0 when not backed off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    doublings: u32,
}

/// How a cleanup changed the back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Unchanged,
    /// It was not backed off and now is.
    Started,
    /// Backed off further.
    Doubled,
    /// It was backed off and no longer is.
    Ended,
}

impl Backoff {
    pub(crate) fn doublings(self) -> u32 {
        self.doublings
    }

    pub(crate) fn is_backed_off(self) -> bool {
        self.doublings > 0
    }

    /// The spacing of cleanups not forced: `min_interval × 2^doublings`.
    pub(crate) fn interval(self, min_interval: Duration) -> Duration {
        min_interval.saturating_mul(1 << self.doublings)
    }

    /// After a cleanup: one not forced that freed little doubles the spacing (up to the cap);
    /// any that freed more ends the back-off; a forced one that freed little changes nothing.
    pub(crate) fn after_cleanup(
        &mut self,
        freed_bytes: u64,
        limit_bytes: u64,
        forced: bool,
    ) -> Change {
        if !freed_little(freed_bytes, limit_bytes) {
            return self.end();
        }
        if forced || self.doublings == MAX_BACKOFF_DOUBLINGS {
            return Change::Unchanged;
        }
        self.doublings += 1;
        if self.doublings == 1 {
            Change::Started
        } else {
            Change::Doubled
        }
    }

    /// Back to cleaning every `min_interval` and shedding (usage left pressure, or a cleanup
    /// freed more than little).
    pub(crate) fn end(&mut self) -> Change {
        if std::mem::take(&mut self.doublings) > 0 {
            Change::Ended
        } else {
            Change::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn little_is_under_a_hundredth_of_the_limit_and_under_a_mib_always() {
        // The measured case: 16 KiB freed with the limit just above an 11.7 MB RSS.
        assert!(freed_little(16 << 10, 12_000_000));
        assert!(freed_little(MIB - 1, 12_000_000), "the MiB floor");
        assert!(!freed_little(MIB, 12_000_000));
        // A 4 GiB limit: a hundredth is about 41 MiB.
        assert!(freed_little(40 * MIB, 4 << 30));
        assert!(!freed_little(42 * MIB, 4 << 30));
        assert!(freed_little(0, 1));
    }

    #[test]
    fn freeing_little_doubles_the_spacing_up_to_the_cap_and_freeing_more_resets_it() {
        let min = Duration::from_secs(60);
        let limit = 1 << 30;
        let mut backoff = Backoff::default();
        assert_eq!(backoff.interval(min), min);
        assert!(!backoff.is_backed_off());

        assert_eq!(backoff.after_cleanup(0, limit, false), Change::Started);
        assert_eq!(backoff.interval(min), min * 2);
        let mut intervals = vec![backoff.interval(min)];
        for _ in 0..10 {
            backoff.after_cleanup(16 << 10, limit, false);
            intervals.push(backoff.interval(min));
        }
        assert_eq!(
            intervals[..5],
            [min * 2, min * 4, min * 8, min * 16, min * 32],
            "doubling each time"
        );
        assert!(
            intervals[5..].iter().all(|&interval| interval == min * 32),
            "capped at 32 ×: {intervals:?}"
        );
        assert_eq!(backoff.doublings(), MAX_BACKOFF_DOUBLINGS);
        assert_eq!(
            backoff.after_cleanup(0, limit, false),
            Change::Unchanged,
            "at the cap"
        );

        assert_eq!(
            backoff.after_cleanup(0, limit, true),
            Change::Unchanged,
            "a forced cleanup that frees little changes nothing"
        );
        assert_eq!(
            backoff.after_cleanup(64 * MIB, limit, true),
            Change::Ended,
            "a forced cleanup that frees more ends it"
        );
        assert_eq!(backoff.interval(min), min);

        backoff.after_cleanup(0, limit, false);
        backoff.after_cleanup(0, limit, false);
        assert_eq!(backoff.interval(min), min * 4);
        assert_eq!(backoff.after_cleanup(11 * MIB, limit, false), Change::Ended);
        assert!(!backoff.is_backed_off());
        assert_eq!(
            backoff.end(),
            Change::Unchanged,
            "ending twice says so once"
        );

        assert_eq!(
            Backoff::default().after_cleanup(0, limit, true),
            Change::Unchanged,
            "forced cleanups never start it"
        );
    }
}
