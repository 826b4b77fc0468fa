//! [`Window`]: the counters the alert rules judge, kept over time so that a rule sees what
//! happened within `alert_window` rather than since start.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use super::Snapshot;

/// Samples kept at most, whatever the window: a new one is kept only once a 256th of the
/// window has passed since the last, so the window's start is within that much.
const MAX_SAMPLES: u32 = 256;

/// The cumulative counters behind the windowed rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    l1_hits: u64,
    l1_misses: u64,
    /// Lookups answered by any tier.
    answered: u64,
    completed: u64,
    failed: u64,
    panicked: u64,
    timed_out: u64,
}

impl Counters {
    fn of(snapshot: &Snapshot) -> Self {
        let cache = &snapshot.cache;
        let tasks = &snapshot.tasks;
        Self {
            l1_hits: cache.l1.hits,
            l1_misses: cache.l1.misses,
            answered: cache.l1.hits + cache.l2.hits + cache.remote.as_ref().map_or(0, |r| r.hits),
            completed: tasks.completed,
            failed: tasks.failed,
            panicked: tasks.panicked,
            timed_out: tasks.timed_out,
        }
    }

    /// What was counted since `base`; saturating, as counters read one by one can be a
    /// little behind one another.
    fn since(self, base: Self) -> Self {
        Self {
            l1_hits: self.l1_hits.saturating_sub(base.l1_hits),
            l1_misses: self.l1_misses.saturating_sub(base.l1_misses),
            answered: self.answered.saturating_sub(base.answered),
            completed: self.completed.saturating_sub(base.completed),
            failed: self.failed.saturating_sub(base.failed),
            panicked: self.panicked.saturating_sub(base.panicked),
            timed_out: self.timed_out.saturating_sub(base.timed_out),
        }
    }
}

/// Counter samples over time, from which a snapshot's cumulative counters are turned into
/// their increase over the window.
#[derive(Debug)]
pub(crate) struct Window {
    /// When counting began (the components were built): before a window has passed, all
    /// that was counted is within it.
    born: Instant,
    /// Oldest first.
    samples: VecDeque<(Instant, Counters)>,
}

impl Window {
    pub(crate) fn new(born: Instant) -> Self {
        Self {
            born,
            samples: VecDeque::new(),
        }
    }

    /// Replaces `snapshot`'s cache lookups and finished tasks (and the rates made of them)
    /// with what was counted within `window` before `now`, and keeps a sample for later.
    pub(crate) fn narrow(&mut self, snapshot: &mut Snapshot, now: Instant, window: Duration) {
        let current = Counters::of(snapshot);
        let start = now.checked_sub(window).unwrap_or(self.born);
        // The latest sample taken at or before the window's start; the ones before it are
        // no longer needed.
        while self.samples.len() >= 2 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        let base = match self.samples.front() {
            Some(&(at, counters)) if at <= start => counters,
            // Younger than the window: everything counted is within it.
            _ if start <= self.born => Counters::default(),
            // The loops started late: count from the oldest sample there is.
            Some(&(_, counters)) => counters,
            None => current,
        };
        let spacing = window / MAX_SAMPLES;
        if self
            .samples
            .back()
            .is_none_or(|&(at, _)| now.saturating_duration_since(at) >= spacing)
        {
            self.samples.push_back((now, current));
        }
        let delta = current.since(base);
        apply(snapshot, delta);
    }
}

/// Writes the windowed counts into the snapshot, rates recomputed.
fn apply(snapshot: &mut Snapshot, delta: Counters) {
    let cache = &mut snapshot.cache;
    cache.l1.hits = delta.l1_hits;
    cache.l1.misses = delta.l1_misses;
    let lookups = delta.l1_hits + delta.l1_misses;
    cache.l1.hit_rate = ratio(delta.l1_hits, lookups);
    cache.hit_rate = ratio(delta.answered, lookups);
    let tasks = &mut snapshot.tasks;
    tasks.completed = delta.completed;
    tasks.failed = delta.failed;
    tasks.panicked = delta.panicked;
    tasks.timed_out = delta.timed_out;
    let bad = delta.failed + delta.panicked + delta.timed_out;
    tasks.failure_rate = ratio(bad, delta.completed + bad);
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// A snapshot whose cumulative counters are these.
    fn totals(hits: u64, misses: u64, completed: u64, failed: u64) -> Snapshot {
        let mut snapshot = crate::alerts::tests::calm();
        snapshot.cache.l1.hits = hits;
        snapshot.cache.l1.misses = misses;
        snapshot.tasks.completed = completed;
        snapshot.tasks.failed = failed;
        snapshot
    }

    #[test]
    fn young_counters_count_whole() {
        let born = Instant::now();
        let mut window = Window::new(born);
        let mut snapshot = totals(30, 70, 9, 1);
        window.narrow(&mut snapshot, born + MINUTE, 5 * MINUTE);
        assert_eq!((snapshot.cache.l1.hits, snapshot.cache.l1.misses), (30, 70));
        assert_eq!(snapshot.cache.hit_rate, 0.3);
        assert_eq!(snapshot.tasks.failure_rate, 0.1);
    }

    /// A cache cold an hour ago (all misses) and warm since: the window sees only the warm
    /// part.
    #[test]
    fn old_counts_leave_the_window() {
        let born = Instant::now();
        let mut window = Window::new(born);
        // Each minute: the first ten all misses, then all hits.
        let (mut hits, mut misses) = (0, 0);
        for minute in 1..=70u32 {
            if minute <= 10 {
                misses += 1000;
            } else {
                hits += 1000;
            }
            let mut snapshot = totals(hits, misses, 0, 0);
            window.narrow(&mut snapshot, born + MINUTE * minute, 5 * MINUTE);
            if minute == 10 {
                assert_eq!(snapshot.cache.hit_rate, 0.0);
            }
            if minute == 12 {
                // Minutes 8 to 12: three cold, two warm.
                assert_eq!(snapshot.cache.l1.hits + snapshot.cache.l1.misses, 5000);
                assert_eq!(snapshot.cache.hit_rate, 0.4);
            }
        }
        let mut snapshot = totals(hits, misses, 0, 0);
        window.narrow(&mut snapshot, born + MINUTE * 70, 5 * MINUTE);
        assert_eq!(snapshot.cache.hit_rate, 1.0, "the cold hour is gone");
        assert_eq!(snapshot.cache.l1.hits, 5000);
        assert!(window.samples.len() <= 7, "{}", window.samples.len());
    }

    #[test]
    fn samples_stay_bounded_however_often_it_is_asked() {
        let born = Instant::now();
        let mut window = Window::new(born);
        for second in 0..10_000u32 {
            let mut snapshot = totals(u64::from(second), 0, 0, 0);
            window.narrow(
                &mut snapshot,
                born + Duration::from_millis(100) * second,
                MINUTE,
            );
        }
        assert!(
            window.samples.len() <= MAX_SAMPLES as usize + 1,
            "{}",
            window.samples.len()
        );
    }
}
