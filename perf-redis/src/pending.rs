//! Changes this instance made that Redis or the other instances have not seen yet.
//!
//! A removal (a delete, a prefix invalidation, a clear, or a write whose SET failed) that
//! could not reach Redis is kept here, as is an announcement the backplane could not publish.
//! The tier's replay task applies them once Redis answers again: it removes from Redis what
//! is still to be removed, then announces everything, so that no instance keeps a copy older
//! than the change. Until then, reads of a key waiting for removal are misses here, so that
//! this instance does not copy back what it removed.
//!
//! Changes are coalesced per key and prefix. Past `limit` keys, a group collapses into one
//! change of everything (a clear of the namespace, or an announcement that drops every shared
//! copy), which is always correct and costs only misses.
//!
//! Each change carries the sequence number of its latest recording. A replay works on a
//! snapshot and afterwards forgets only what it applied: a change recorded again meanwhile
//! has a newer number and stays for the next replay.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What one part of the pending state is about: keys, prefixes, or everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) keys: HashMap<String, u64>,
    pub(crate) prefixes: HashMap<String, u64>,
    pub(crate) all: Option<u64>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty() && self.all.is_none()
    }

    fn len(&self) -> usize {
        self.keys.len() + self.prefixes.len() + usize::from(self.all.is_some())
    }

    fn covers(&self, key: &str) -> bool {
        self.all.is_some()
            || self.keys.contains_key(key)
            || self
                .prefixes
                .keys()
                .any(|prefix| key.starts_with(prefix.as_str()))
    }

    fn record(&mut self, change: Change, seq: u64, limit: usize) {
        match change {
            Change::Key(key) => {
                self.keys.insert(key, seq);
            }
            Change::Prefix(prefix) => {
                self.prefixes.insert(prefix, seq);
            }
            Change::All => self.all = Some(seq),
        }
        if self.keys.len() + self.prefixes.len() > limit {
            self.keys.clear();
            self.prefixes.clear();
            self.all = Some(seq);
        }
    }

    /// Forgets what `applied` held, unless it was recorded again since.
    fn forget(&mut self, applied: &Group) {
        let newer = |seq: &u64, applied_seq: Option<&u64>| applied_seq.is_none_or(|a| seq > a);
        self.keys
            .retain(|key, seq| newer(seq, applied.keys.get(key)));
        self.prefixes
            .retain(|prefix, seq| newer(seq, applied.prefixes.get(prefix)));
        if self
            .all
            .is_some_and(|seq| !newer(&seq, applied.all.as_ref()))
        {
            self.all = None;
        }
    }
}

/// A change to the shared tier, as the backplane announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Key(String),
    Prefix(String),
    All,
}

/// What is waiting: removals from Redis (announced once applied), and announcements alone
/// (Redis already holds the change).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) remove: Group,
    pub(crate) announce: Group,
}

impl Snapshot {
    pub(crate) fn len(&self) -> usize {
        self.remove.len() + self.announce.len()
    }
}

#[derive(Debug)]
pub(crate) struct Pending {
    state: Mutex<State>,
    /// Whether anything waits: reads check this before taking the lock.
    waiting: AtomicBool,
    /// Wakes the replay task: something was recorded, or Redis answered again.
    wake: Notify,
    limit: usize,
}

#[derive(Debug, Default)]
struct State {
    changes: Snapshot,
    seq: u64,
}

impl Pending {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            waiting: AtomicBool::new(false),
            wake: Notify::new(),
            limit: limit.max(1),
        }
    }

    /// `change` did not reach Redis: remove it there, and announce it, once Redis answers.
    pub(crate) fn remove_later(&self, change: Change) {
        self.record(change, |changes| &mut changes.remove);
    }

    /// `change` is on its way to Redis: unless the call [applies](InFlight::applied) it, it
    /// waits for the replay, however the call ended (an error, or its future dropped).
    pub(crate) fn in_flight(&self, change: Change) -> InFlight<'_> {
        InFlight {
            pending: self,
            change,
            applied: false,
        }
    }

    /// `change` reached Redis but its announcement was not published.
    pub(crate) fn announce_later(&self, change: Change) {
        self.record(change, |changes| &mut changes.announce);
    }

    fn record(&self, change: Change, group: impl FnOnce(&mut Snapshot) -> &mut Group) {
        let mut state = self.state.lock();
        state.seq += 1;
        let seq = state.seq;
        let group = group(&mut state.changes);
        let collapsed_before = group.all.is_some();
        group.record(change, seq, self.limit);
        if group.all.is_some() && !collapsed_before {
            tracing::warn!(
                limit = self.limit,
                "pending Redis changes past their limit; they collapse into one of everything"
            );
        }
        self.waiting.store(true, Ordering::Release);
        drop(state);
        self.wake.notify_one();
    }

    /// A mark to give [`stored`](Self::stored) after a write: the changes recorded so far.
    pub(crate) fn mark(&self) -> u64 {
        if !self.waiting.load(Ordering::Acquire) {
            return 0; // nothing recorded before is waiting
        }
        self.state.lock().seq
    }

    /// A SET of `key` that began at `mark` reached Redis: a removal of the key recorded
    /// before it is obsolete (the SET replaced the value, and announces it). A removal
    /// recorded since, or one of a prefix or of everything, stays.
    pub(crate) fn stored(&self, key: &str, mark: u64) {
        if mark == 0 {
            return;
        }
        let mut state = self.state.lock();
        let removals = &mut state.changes.remove.keys;
        if removals.get(key).is_some_and(|&seq| seq <= mark) {
            removals.remove(key);
        }
    }

    /// Whether a read of `key` must not ask Redis: its removal has not been applied yet.
    pub(crate) fn hides(&self, key: &str) -> bool {
        self.waiting.load(Ordering::Acquire) && self.state.lock().changes.remove.covers(key)
    }

    pub(crate) fn len(&self) -> usize {
        if !self.waiting.load(Ordering::Acquire) {
            return 0;
        }
        self.state.lock().changes.len()
    }

    /// What waits now, for a replay; `None` when nothing does.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        let state = self.state.lock();
        let changes = &state.changes;
        (!changes.remove.is_empty() || !changes.announce.is_empty()).then(|| changes.clone())
    }

    /// The replay applied `snapshot`: forget it, keeping what was recorded again since.
    pub(crate) fn applied(&self, snapshot: &Snapshot) {
        let mut state = self.state.lock();
        let changes = &mut state.changes;
        changes.remove.forget(&snapshot.remove);
        changes.announce.forget(&snapshot.announce);
        let empty = changes.remove.is_empty() && changes.announce.is_empty();
        self.waiting.store(!empty, Ordering::Release);
    }

    /// Waits until something was recorded or [`nudge`](Self::nudge) was called.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Redis answered again: wake the replay task if it waits for that.
    pub(crate) fn nudge(&self) {
        if self.waiting.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
    }
}

/// A change whose Redis call has not succeeded yet; see [`Pending::in_flight`].
#[must_use = "the change waits for the replay unless applied"]
pub(crate) struct InFlight<'a> {
    pending: &'a Pending,
    change: Change,
    applied: bool,
}

impl InFlight<'_> {
    /// Redis took the change: it is the caller's to announce.
    pub(crate) fn applied(mut self) -> Change {
        self.applied = true;
        // What is left behind is never read: `Drop` sees `applied`.
        std::mem::replace(&mut self.change, Change::All)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.applied {
            let change = std::mem::replace(&mut self.change, Change::All);
            self.pending.remove_later(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Change {
        Change::Key(k.into())
    }

    #[test]
    fn a_pending_removal_hides_its_key_and_prefix_until_applied() {
        let pending = Pending::new(100);
        assert!(!pending.hides("a"));
        pending.remove_later(key("a"));
        pending.remove_later(Change::Prefix("user:".into()));
        pending.announce_later(key("b"));
        assert!(pending.hides("a"));
        assert!(pending.hides("user:7"));
        assert!(!pending.hides("b"), "an announcement alone hides nothing");
        assert_eq!(pending.len(), 3);

        let snapshot = pending.snapshot().expect("something waits");
        pending.applied(&snapshot);
        assert!(!pending.hides("a"));
        assert!(!pending.hides("user:7"));
        assert_eq!(pending.len(), 0);
        assert!(pending.snapshot().is_none());
    }

    #[test]
    fn a_change_recorded_again_during_a_replay_survives_it() {
        let pending = Pending::new(100);
        pending.remove_later(key("a"));
        pending.remove_later(key("b"));
        let snapshot = pending.snapshot().expect("something waits");
        pending.remove_later(key("a")); // failed again while the replay ran
        pending.remove_later(Change::All);
        pending.applied(&snapshot);
        let left = pending.snapshot().expect("the newer changes wait");
        assert_eq!(left.remove.keys.keys().collect::<Vec<_>>(), ["a"]);
        assert!(left.remove.all.is_some());
        assert!(pending.hides("anything"));
    }

    #[test]
    fn a_write_that_reached_redis_makes_an_earlier_removal_of_its_key_obsolete() {
        let pending = Pending::new(100);
        pending.remove_later(key("a"));
        pending.remove_later(key("b"));
        let mark = pending.mark();
        pending.remove_later(key("b")); // failed again after the write began
        pending.stored("a", mark);
        pending.stored("b", mark);
        assert!(
            !pending.hides("a"),
            "the write replaced what was to be removed"
        );
        assert!(
            pending.hides("b"),
            "a removal recorded during the write stays"
        );
        pending.remove_later(Change::Prefix("c".into()));
        pending.stored("c1", pending.mark());
        assert!(pending.hides("c1"), "a prefix removal stays");
    }

    #[test]
    fn a_change_in_flight_waits_unless_applied() {
        let pending = Pending::new(100);
        drop(pending.in_flight(key("dropped"))); // an error, or a future dropped mid-call
        let applied = pending.in_flight(key("applied")).applied();
        assert_eq!(applied, key("applied"));
        assert!(pending.hides("dropped"));
        assert!(!pending.hides("applied"));
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn changes_coalesce_per_key_and_collapse_past_the_limit() {
        let pending = Pending::new(3);
        for _ in 0..5 {
            pending.remove_later(key("same"));
        }
        assert_eq!(pending.len(), 1);
        for k in ["a", "b", "c"] {
            pending.announce_later(key(k));
        }
        let snapshot = pending.snapshot().expect("waits");
        assert_eq!(snapshot.announce.keys.len(), 3);
        assert!(snapshot.announce.all.is_none());
        pending.announce_later(key("d"));
        let snapshot = pending.snapshot().expect("waits");
        assert!(snapshot.announce.keys.is_empty());
        assert!(snapshot.announce.all.is_some(), "collapsed into everything");
        assert!(!pending.hides("d"), "announcements never hide");
        assert!(pending.hides("same"));
    }
}
