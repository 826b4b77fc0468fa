//! Hits and misses per memoized function: `cache_function_calls_total{function, result}`.
//!
//! The tier series (`cache_hits_total{tier, operation}`) count every lookup of a cache,
//! memoized or not; this one tells the `#[cache_result]` functions apart. A call is a `hit`
//! when it returned without running the function's body (answered by any tier, or by another
//! caller's load), a `miss` when the body ran for it. Counts are process-wide, like the
//! functions: the first [`MAX_FUNCTIONS`] functions to be called each have a series, any later
//! ones share `function="other"`, so the label's values stay bounded whatever the program.

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use parking_lot::Mutex;
use serde::Serialize;

use super::near::NearSite;
use crate::{
    metrics::{CACHE_FUNCTION_CALLS_TOTAL, labels},
    striped::{StripedCounters, ThreadStripe},
};

/// How many functions get a series of their own; the last slot is `other`.
pub const MAX_FUNCTIONS: usize = 128;
const OTHER: usize = MAX_FUNCTIONS - 1;
const UNREGISTERED: usize = usize::MAX;

/// Two counters per function: hits, then misses.
static COUNTERS: LazyLock<StripedCounters<{ 2 * MAX_FUNCTIONS }>> =
    LazyLock::new(StripedCounters::default);

/// The functions with a slot, in slot order, and the counts already published.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    functions: Vec::new(),
    published: Vec::new(),
});

struct Registry {
    functions: Vec<&'static str>,
    published: Vec<u64>,
}

/// One memoized function's counters and its site in near caches: a `static` in the code
/// `#[cache_result]` generates.
#[derive(Debug)]
pub struct Memoized {
    function: &'static str,
    slot: AtomicUsize,
    near: NearSite,
}

impl Memoized {
    /// The counters of `function` (its path, the `function` label).
    pub const fn new(function: &'static str) -> Self {
        Self {
            function,
            slot: AtomicUsize::new(UNREGISTERED),
            near: NearSite::new(),
        }
    }

    /// The function's path.
    pub(crate) fn function(&self) -> &'static str {
        self.function
    }

    /// The function's site in near caches.
    pub(crate) fn near_site(&'static self) -> &'static NearSite {
        &self.near
    }

    /// Counts a call answered without running the body.
    #[inline]
    pub fn hit(&self) {
        self.hit_on(ThreadStripe::current());
    }

    /// [`hit`](Self::hit), on the stripe the caller read.
    #[inline]
    pub(crate) fn hit_on(&self, stripe: ThreadStripe) {
        COUNTERS.add_on(stripe, 2 * self.slot(), 1);
    }

    /// Counts a call that went past the fast hit: a miss if `ran` says its body ran.
    pub fn record(&self, ran: &BodyRan) {
        let miss = ran.0.load(Ordering::Acquire);
        COUNTERS.add(2 * self.slot() + usize::from(miss), 1);
    }

    #[inline]
    fn slot(&self) -> usize {
        match self.slot.load(Ordering::Relaxed) {
            UNREGISTERED => self.register(),
            slot => slot,
        }
    }

    #[cold]
    fn register(&self) -> usize {
        let mut registry = REGISTRY.lock();
        let functions = &mut registry.functions;
        // Another static of the same function (a generic function's copies share one, but a
        // function may be compiled into several crates) shares its slot.
        let slot = match functions.iter().position(|&f| f == self.function) {
            Some(slot) => slot,
            None if functions.len() < OTHER => {
                functions.push(self.function);
                functions.len() - 1
            }
            None => OTHER,
        };
        self.slot.store(slot, Ordering::Relaxed);
        slot
    }
}

/// Set by a memoized call's loader when it runs, so that the call knows whether its own
/// body produced its value. Shared, as a detached load runs in a task of its own.
#[derive(Debug, Clone, Default)]
pub struct BodyRan(Arc<AtomicBool>);

impl BodyRan {
    /// Marks the body as run.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One memoized function's counts since the process started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's path (`my_crate::ads::fetch_ad`), or `other`.
    pub function: String,
    /// Calls answered without running the body.
    pub hits: u64,
    /// Calls that ran the body.
    pub misses: u64,
}

/// The counts of every memoized function called so far, in the order they were first called.
pub fn function_stats() -> Vec<FunctionStats> {
    let registry = REGISTRY.lock();
    slots(&registry)
        .map(|(slot, function)| FunctionStats {
            function: function.to_owned(),
            hits: COUNTERS.sum(2 * slot),
            misses: COUNTERS.sum(2 * slot + 1),
        })
        .filter(|stats| stats.function != "other" || stats.hits + stats.misses > 0)
        .collect()
}

/// The registered functions with their slots, and `other` last.
fn slots(registry: &Registry) -> impl Iterator<Item = (usize, &'static str)> + '_ {
    registry
        .functions
        .iter()
        .copied()
        .enumerate()
        .chain(std::iter::once((OTHER, "other")))
}

/// Publishes what changed since the last call to the `metrics` recorder. Several caches may
/// call it; the registry's lock makes each count published once.
pub(crate) fn publish() {
    let mut registry = REGISTRY.lock();
    registry.published.resize(2 * MAX_FUNCTIONS, 0);
    let functions: Vec<(usize, &'static str)> = slots(&registry).collect();
    for (slot, function) in functions {
        for (offset, result) in [(0, "hit"), (1, "miss")] {
            let index = 2 * slot + offset;
            let now = COUNTERS.sum(index);
            let delta = now.saturating_sub(registry.published[index]);
            if delta > 0 {
                metrics::counter!(
                    crate::metrics::name(CACHE_FUNCTION_CALLS_TOTAL),
                    labels::FUNCTION => function,
                    labels::RESULT => result
                )
                .increment(delta);
                registry.published[index] = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_past_the_bound_share_the_other_series() {
        // Statics in generated code; leaked here to have more of them than the bound.
        let functions: Vec<&'static Memoized> = (0..MAX_FUNCTIONS + 10)
            .map(|i| {
                let name: &'static str = Box::leak(format!("bounded::f{i}").into_boxed_str());
                &*Box::leak(Box::new(Memoized::new(name)))
            })
            .collect();
        for function in &functions {
            function.hit();
        }
        // The same function from a second static shares its slot.
        Memoized::new("bounded::f0").record(&BodyRan::default());

        let stats = function_stats();
        assert!(stats.len() <= MAX_FUNCTIONS, "{} series", stats.len());
        let f0 = stats.iter().find(|s| s.function == "bounded::f0");
        assert_eq!(f0.map(|s| s.hits), Some(2));
        let other = stats.iter().find(|s| s.function == "other").expect("other");
        let named = stats
            .iter()
            .filter(|s| s.function.starts_with("bounded::"))
            .count();
        assert_eq!(named + other.hits as usize, MAX_FUNCTIONS + 10);
    }
}
