//! A value held for the whole program or shared through an `Arc`, read the same way.

use std::{ops::Deref, sync::Arc};

/// A `T` that lives as long as the program (a call site's operation, the installed optimizer)
/// or one made at run time and shared. Reading it through `Deref` updates no reference count,
/// which is why the static case is not an `Arc` too: a call site's handle is read by every
/// thread on every call.
///
/// For perf's own crates (perf-http holds its optimizer in one); not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub enum StaticOrShared<T: 'static> {
    /// Lives as long as the program.
    Static(&'static T),
    /// Made at run time.
    Shared(Arc<T>),
}

impl<T> Clone for StaticOrShared<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Static(value) => Self::Static(value),
            Self::Shared(value) => Self::Shared(Arc::clone(value)),
        }
    }
}

impl<T> Deref for StaticOrShared<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Self::Static(value) => value,
            Self::Shared(value) => value,
        }
    }
}
