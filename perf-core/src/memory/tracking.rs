//! [`TrackingAllocator`]: counts what the program allocates and frees, cheaply enough to leave
//! on in production.
//!
//! Counts go to one of [`STRIPES`] cache-line-sized stripes picked per thread, so that threads
//! do not fight over one counter (one shared counter made alloc + free several times slower on
//! two threads here). Each thread also keeps its own running totals, which
//! [`memory_context`](super::memory_context) reads to tell what a scope allocated.
//!
//! Live bytes are the sum over stripes; the peak is brought up to date whenever a stripe's
//! allocations cross a [`PEAK_STEP`] boundary and whenever the counts are read, so a peak
//! shorter than that much allocation can be missed.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use serde::Serialize;

/// Counter stripes; threads beyond this many share.
const STRIPES: usize = 64;
/// Allocation volume, per stripe, between peak updates.
const PEAK_STEP: u64 = 1 << 20;

/// A [`GlobalAlloc`] that counts bytes allocated and freed, around another allocator
/// (the system's by default). Opt in with `#[global_allocator]`:
///
/// ```
/// use perf_core::memory::TrackingAllocator;
///
/// #[global_allocator]
/// static ALLOCATOR: TrackingAllocator = TrackingAllocator::system();
/// # fn main() {}
/// ```
///
/// It wraps any allocator, jemalloc's included:
/// `TrackingAllocator::new(tikv_jemallocator::Jemalloc)`.
#[derive(Debug, Default)]
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// Counting around the system allocator (the C library's `malloc` on Unix).
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// Counting around `inner`, which does the allocating.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// SAFETY: every call is passed to the inner allocator unchanged; the counting around it
// neither allocates nor touches the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let block = unsafe { self.inner.alloc(layout) };
        if !block.is_null() {
            counted_alloc(layout.size());
        }
        block
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        let block = unsafe { self.inner.alloc_zeroed(layout) };
        if !block.is_null() {
            counted_alloc(layout.size());
        }
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        counted_free(layout.size());
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { self.inner.dealloc(block, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let moved = unsafe { self.inner.realloc(block, layout, new_size) };
        if !moved.is_null() {
            counted_free(layout.size());
            counted_alloc(new_size);
        }
        moved
    }
}

/// What [`TrackingAllocator`] has counted since the program started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrackedStats {
    /// Bytes allocated, in total (a reallocation counts its new size).
    pub allocated_bytes: u64,
    /// Bytes freed, in total (a reallocation counts its old size).
    pub freed_bytes: u64,
    /// `allocated_bytes - freed_bytes`.
    pub live_bytes: u64,
    /// The highest `live_bytes` seen (see the module documentation for its resolution).
    pub peak_live_bytes: u64,
}

/// The counts, if [`TrackingAllocator`] is the global allocator and counting.
pub fn tracked_stats() -> Option<TrackedStats> {
    if !tracking_is_active() {
        return None;
    }
    let (allocated_bytes, freed_bytes) = totals();
    let live_bytes = allocated_bytes.saturating_sub(freed_bytes);
    let peak_live_bytes = PEAK
        .fetch_max(live_bytes, Ordering::Relaxed)
        .max(live_bytes);
    Some(TrackedStats {
        allocated_bytes,
        freed_bytes,
        live_bytes,
        peak_live_bytes,
    })
}

/// Whether [`TrackingAllocator`] is the global allocator (it has counted an allocation) and
/// counting has not been turned off.
pub fn tracking_is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed) && !DISABLED.load(Ordering::Relaxed)
}

/// Stops counting for the rest of the process (`allocation_tracking_enabled = false` at
/// `install()`): allocations cost what the inner allocator's do, and no counts are reported.
/// One way, since frees of memory counted before would leave the counts wrong.
pub fn disable_tracking() {
    DISABLED.store(true, Ordering::Relaxed);
}

/// This thread's running totals of bytes allocated and freed.
pub(crate) fn thread_totals() -> (u64, u64) {
    THREAD
        .try_with(|thread| (thread.allocated.get(), thread.freed.get()))
        .unwrap_or((0, 0))
}

#[repr(align(128))]
struct Stripe {
    allocated: AtomicU64,
    freed: AtomicU64,
}

static STRIPE_COUNTERS: [Stripe; STRIPES] = [const {
    Stripe {
        allocated: AtomicU64::new(0),
        freed: AtomicU64::new(0),
    }
}; STRIPES];
static NEXT_STRIPE: AtomicU32 = AtomicU32::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static DISABLED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Per-thread state. Constant-initialized and without a destructor, so reading it never
/// allocates: it is safe inside the allocator.
struct ThreadCounts {
    /// 1 + this thread's stripe, 0 until the first allocation.
    stripe: Cell<u32>,
    allocated: Cell<u64>,
    freed: Cell<u64>,
}

thread_local! {
    static THREAD: ThreadCounts = const {
        ThreadCounts {
            stripe: Cell::new(0),
            allocated: Cell::new(0),
            freed: Cell::new(0),
        }
    };
}

#[inline]
fn stripe_of(thread: &ThreadCounts) -> &'static Stripe {
    let mut stripe = thread.stripe.get();
    if stripe == 0 {
        stripe = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES as u32 + 1;
        thread.stripe.set(stripe);
        ACTIVE.store(true, Ordering::Relaxed);
    }
    &STRIPE_COUNTERS[(stripe - 1) as usize]
}

#[inline]
fn counted_alloc(size: usize) {
    let Some((stripe, size)) = counted(size, |thread| &thread.allocated) else {
        return;
    };
    let before = stripe.allocated.fetch_add(size, Ordering::Relaxed);
    if (before ^ (before + size)) >= PEAK_STEP {
        update_peak();
    }
}

#[inline]
fn counted_free(size: usize) {
    if let Some((stripe, size)) = counted(size, |thread| &thread.freed) {
        stripe.freed.fetch_add(size, Ordering::Relaxed);
    }
}

/// Adds `size` to this thread's running total `total` and returns the thread's stripe (the
/// first one for a thread being torn down); `None` once tracking is off.
#[inline]
fn counted(size: usize, total: fn(&ThreadCounts) -> &Cell<u64>) -> Option<(&'static Stripe, u64)> {
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    let size = size as u64;
    let stripe = THREAD.try_with(|thread| {
        let total = total(thread);
        total.set(total.get() + size);
        stripe_of(thread)
    });
    Some((stripe.unwrap_or(&STRIPE_COUNTERS[0]), size))
}

fn totals() -> (u64, u64) {
    STRIPE_COUNTERS
        .iter()
        .fold((0, 0), |(allocated, freed), stripe| {
            (
                allocated + stripe.allocated.load(Ordering::Relaxed),
                freed + stripe.freed.load(Ordering::Relaxed),
            )
        })
}

#[cold]
fn update_peak() {
    let (allocated, freed) = totals();
    PEAK.fetch_max(allocated.saturating_sub(freed), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not the global allocator here: called directly, it counts all the same.
    static COUNTING: TrackingAllocator = TrackingAllocator::system();

    #[test]
    fn allocations_and_frees_are_counted_exactly_on_this_thread() {
        let layout = Layout::from_size_align(1000, 8).expect("layout");
        let (allocated_before, freed_before) = thread_totals();
        // SAFETY: a non-zero-sized layout, freed with the same layout.
        unsafe {
            let block = COUNTING.alloc(layout);
            assert!(!block.is_null());
            let grown = COUNTING.realloc(block, layout, 3000);
            assert!(!grown.is_null());
            let grown_layout = Layout::from_size_align(3000, 8).expect("layout");
            COUNTING.dealloc(grown, grown_layout);
            let zeroed = COUNTING.alloc_zeroed(layout);
            assert_eq!(*zeroed, 0);
            COUNTING.dealloc(zeroed, layout);
        }
        let (allocated, freed) = thread_totals();
        assert_eq!(allocated - allocated_before, 1000 + 3000 + 1000);
        assert_eq!(freed - freed_before, 1000 + 3000 + 1000);
        let stats = tracked_stats().expect("active once it counted");
        assert!(stats.allocated_bytes >= 5000);
        assert!(stats.peak_live_bytes >= stats.live_bytes);
    }

    #[test]
    fn the_peak_follows_large_allocations() {
        let layout = Layout::from_size_align(8 << 20, 8).expect("layout");
        // SAFETY: a non-zero-sized layout, freed with the same layout.
        unsafe {
            let block = COUNTING.alloc(layout);
            assert!(!block.is_null());
            COUNTING.dealloc(block, layout);
        }
        let stats = tracked_stats().expect("active");
        assert!(stats.peak_live_bytes >= 8 << 20, "{stats:?}");
    }
}
