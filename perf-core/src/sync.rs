//! The synchronization primitives whose interleavings the model tests explore: parking_lot's
//! and std's normally, shuttle's in a build with `--cfg shuttle` (see the `model` tests in
//! `cache/coalesce.rs` and `cache/near.rs`). Only what those protocols use comes from here.

#[cfg(not(shuttle))]
pub(crate) use parking_lot::{Condvar, Mutex};
#[cfg(not(shuttle))]
pub(crate) use std::sync::atomic::AtomicU64;

#[cfg(shuttle)]
pub(crate) use model::{Condvar, Mutex};
#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::AtomicU64;

/// shuttle's `Mutex` and `Condvar` behind parking_lot's API (no poisoning, a guard that a
/// wait takes by reference).
#[cfg(shuttle)]
mod model {
    use std::{
        ops::{Deref, DerefMut},
        sync::PoisonError,
    };

    #[derive(Default)]
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    /// Empty only for the moment a wait hands it to shuttle.
    pub(crate) struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().expect("held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("held")
        }
    }

    #[derive(Default)]
    pub(crate) struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.0.take().expect("held");
            guard.0 = Some(self.0.wait(held).unwrap_or_else(PoisonError::into_inner));
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
