//! The allocator's own figures, and asking it to give freed memory back to the system.
//!
//! Freed memory stays with the allocator, ready for reuse, until it is asked to return it:
//! glibc's `malloc_trim(0)` releases the free pages of every arena (not only the top of the
//! heap), and jemalloc's `arena.<all>.purge` does the same for its arenas.

use serde::Serialize;

use super::CleanupAction;

/// What the allocator says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocatorStats {
    /// `glibc` or `jemalloc`.
    pub allocator: &'static str,
    /// Bytes handed out to the program and not yet freed.
    pub allocated_bytes: u64,
    /// Bytes the allocator holds without handing them out: freed memory kept for reuse.
    pub held_free_bytes: u64,
}

/// jemalloc's figures when the feature `jemalloc` is on and jemalloc is in use, else
/// glibc's on linux-gnu.
pub(crate) fn stats() -> Option<AllocatorStats> {
    #[cfg(feature = "jemalloc")]
    if let Some(stats) = jemalloc::stats().filter(|stats| stats.allocated_bytes > 0) {
        return Some(stats);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    return Some(glibc::stats());
    #[allow(unreachable_code)]
    None
}

/// One allocator asked to return its free pages to the system: a step of a cleanup.
pub(crate) type Release = fn() -> CleanupAction;

/// A step for every allocator there is, each asking it to return its free pages. The memory
/// manager runs them one by one, reading RSS around each.
pub(crate) fn releases() -> Vec<Release> {
    [
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        (glibc::trim as Release),
        #[cfg(feature = "jemalloc")]
        (jemalloc::purge as Release),
    ]
    .into_iter()
    .collect()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use super::{AllocatorStats, CleanupAction};

    pub(super) fn stats() -> AllocatorStats {
        // SAFETY: mallinfo2 takes no arguments and only reads the allocator's state.
        let info = unsafe { libc::mallinfo2() };
        AllocatorStats {
            allocator: "glibc",
            // In-use bytes in the arenas plus blocks mapped on their own.
            allocated_bytes: (info.uordblks + info.hblkhd) as u64,
            held_free_bytes: info.fordblks as u64,
        }
    }

    pub(super) fn trim() -> CleanupAction {
        // SAFETY: malloc_trim only walks and trims the allocator's own arenas.
        let released = unsafe { libc::malloc_trim(0) } == 1;
        CleanupAction::new(
            "malloc_trim",
            if released {
                "returned free pages to the system"
            } else {
                "nothing to return"
            },
        )
    }
}

#[cfg(feature = "jemalloc")]
mod jemalloc {
    use tikv_jemalloc_ctl::{epoch, stats};

    use super::{AllocatorStats, CleanupAction};

    /// `MALLCTL_ARENAS_ALL`: the pseudo-arena index that means every arena.
    const ALL_ARENAS: u32 = 4096;

    pub(super) fn stats() -> Option<AllocatorStats> {
        // jemalloc's statistics are a snapshot refreshed by advancing the epoch.
        epoch::advance().ok()?;
        let allocated = stats::allocated::read().ok()?;
        let resident = stats::resident::read().ok()?;
        Some(AllocatorStats {
            allocator: "jemalloc",
            allocated_bytes: allocated as u64,
            held_free_bytes: resident.saturating_sub(allocated) as u64,
        })
    }

    pub(super) fn purge() -> CleanupAction {
        let name = format!("arena.{ALL_ARENAS}.purge\0");
        // SAFETY: the name is NUL-terminated; `arena.<i>.purge` is a command without input or
        // output, so every value pointer is null and the length zero, as mallctl requires.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        CleanupAction::new(
            "jemalloc_purge",
            if status == 0 {
                "purged every arena".to_owned()
            } else {
                format!("mallctl failed with error {status}")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allocator_there_is_is_asked_to_release() {
        let actions: Vec<CleanupAction> = releases().into_iter().map(|release| release()).collect();
        let names: Vec<_> = actions.iter().map(|action| action.name.as_str()).collect();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(names.contains(&"malloc_trim"), "{names:?}");
        }
        if cfg!(feature = "jemalloc") {
            assert!(names.contains(&"jemalloc_purge"), "{names:?}");
            let purge = actions.iter().find(|a| a.name == "jemalloc_purge");
            assert_eq!(purge.map(|a| a.detail.as_str()), Some("purged every arena"));
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_reports_what_it_has_handed_out() {
        let block = vec![1u8; 4 << 20];
        let during = glibc::stats();
        assert_eq!(during.allocator, "glibc");
        assert!(during.allocated_bytes >= 4 << 20, "{during:?}");
        drop(block);
    }
}
