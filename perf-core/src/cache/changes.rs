//! Which keys changed while a read was copying a value up a tier.
//!
//! A read that finds a value in L2 or the remote tier copies it into the tiers above. If the
//! key is written or invalidated meanwhile, the copy can land after the change dropped the
//! old copies and outlive it. So every change is bracketed: [`Changes::key`] (or
//! [`Changes::all`]) marks the key's bucket as changing and bumps its count before the copies
//! change, and its guard clears the mark once they have. A read takes a [`Mark`] before it
//! reads the lower tier and, after copying, keeps the copy only if [`Changes::unchanged`]:
//! no change was under way when it took the mark and none began since.
//!
//! Why that is enough: a change that ended before the mark is already in the lower tier the
//! read sees; one under way at the mark makes the read give its copy back; one that began
//! after the mark bumps the count, which the check after the copy sees; and if the check came
//! first, the copy came first too, and the change's own removal drops it.
//!
//! Counts are per bucket of keys (hashed), so an unrelated change in the same bucket may make
//! a read give back a good copy: a miss, never a stale value.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of keys; a power of two.
const BUCKETS: usize = 1024;
/// One change under way, in the high half of a bucket's word; the low half counts changes.
const UNDER_WAY: u64 = 1 << 32;

pub(crate) struct Changes {
    buckets: Box<[AtomicU64]>,
}

/// A bucket's word when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark(u64);

/// Clears the marks of a change when its copies have changed.
#[must_use = "the change is under way until the guard drops"]
pub(crate) struct Changing<'a> {
    changes: &'a Changes,
    /// The one bucket changed, or `None` for all of them.
    bucket: Option<usize>,
}

impl Changes {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket_of(key: &str) -> usize {
        (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize) & (BUCKETS - 1)
    }

    /// `key`'s copies are about to change; they have once the guard drops.
    pub(crate) fn key(&self, key: &str) -> Changing<'_> {
        let bucket = Self::bucket_of(key);
        self.buckets[bucket].fetch_add(UNDER_WAY + 1, Ordering::AcqRel);
        Changing {
            changes: self,
            bucket: Some(bucket),
        }
    }

    /// Any key's copies are about to change (a prefix, a clear).
    pub(crate) fn all(&self) -> Changing<'_> {
        for bucket in &*self.buckets {
            bucket.fetch_add(UNDER_WAY + 1, Ordering::AcqRel);
        }
        Changing {
            changes: self,
            bucket: None,
        }
    }

    /// Taken before a read of a lower tier.
    pub(crate) fn mark(&self, key: &str) -> Mark {
        Mark(self.buckets[Self::bucket_of(key)].load(Ordering::Acquire))
    }

    /// Whether a copy made after `mark` may stay: no change of `key` was under way at the
    /// mark, and none began since.
    pub(crate) fn unchanged(&self, key: &str, mark: Mark) -> bool {
        mark.0 < UNDER_WAY && self.mark(key) == mark
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        let buckets = &self.changes.buckets;
        match self.bucket {
            Some(bucket) => {
                buckets[bucket].fetch_sub(UNDER_WAY, Ordering::AcqRel);
            }
            None => {
                for bucket in &**buckets {
                    bucket.fetch_sub(UNDER_WAY, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_stays_only_if_no_change_was_under_way_or_began_since_its_mark() {
        let changes = Changes::new();
        let before = changes.mark("k");
        assert!(changes.unchanged("k", before));

        let changing = changes.key("k");
        assert!(
            !changes.unchanged("k", before),
            "a change began after the mark"
        );
        let during = changes.mark("k");
        assert!(
            !changes.unchanged("k", during),
            "a change was under way at the mark"
        );
        drop(changing);
        assert!(!changes.unchanged("k", during));

        let after = changes.mark("k");
        assert!(
            changes.unchanged("k", after),
            "the change ended before the mark"
        );

        let all = changes.all();
        assert!(!changes.unchanged("k", after));
        assert!(!changes.unchanged("other", changes.mark("other")));
        drop(all);
        assert!(changes.unchanged("other", changes.mark("other")));
    }
}
