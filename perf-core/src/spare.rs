//! Per-thread spare values (key buffers, compression contexts) that calls reuse instead of
//! making anew.
//!
//! A call takes its thread's spare out while it works and keeps it again after. A re-entrant
//! call (a `Serialize`, `Deserialize` or `Clone` that itself uses the cache) finds none and
//! makes its own; so does a call made while the thread's locals are destroyed (from a value's
//! `Drop`), where `LocalKey::with` would panic, and a panic there aborts the process.

use std::{cell::Cell, thread::LocalKey};

/// This thread's spare in `spare`, if it has one free.
#[inline]
pub(crate) fn take<T>(spare: &'static LocalKey<Cell<Option<T>>>) -> Option<T> {
    spare.try_with(Cell::take).ok().flatten()
}

/// Keeps `value` as this thread's spare in `spare`; drops it if the thread's locals are gone.
#[inline]
pub(crate) fn keep<T>(spare: &'static LocalKey<Cell<Option<T>>>, value: T) {
    // An error means the locals are gone: `value` went with the closure.
    let _gone = spare.try_with(|slot| slot.set(Some(value)));
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SPARE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
    }

    #[test]
    fn a_kept_value_is_taken_once() {
        assert_eq!(take(&SPARE), None);
        keep(&SPARE, vec![1, 2]);
        assert_eq!(take(&SPARE), Some(vec![1, 2]));
        assert_eq!(take(&SPARE), None, "taken: a re-entrant call makes its own");
    }
}
