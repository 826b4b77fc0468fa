//! The entries the tiers hold and what a lookup finds: shared by the tiers, the near cache
//! and the engine.

use std::{any::Any, sync::Arc};

use super::stamp::{Age, Stamp};

pub(crate) type AnyValue = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) struct L1Entry {
    pub(crate) value: AnyValue,
    /// Its lifetime; `stamp.shared` marks a copy of a remote-tier value, dropped when remote
    /// invalidations may have been missed.
    pub(crate) stamp: Stamp,
}

/// An L1 entry as L1's map (and a near slot) holds it.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) entry: L1Entry,
    /// `entry.stamp.fresh_until` as `ExpiryClock::coarse_deadline` gives it.
    pub(crate) fresh_coarse: u64,
}

#[derive(Clone)]
pub(crate) struct L2Entry {
    pub(crate) bytes: Arc<[u8]>,
    /// Its lifetime (the header's copy is for the remote tier); `stamp.shared` marks a copy of
    /// a remote-tier value.
    pub(crate) stamp: Stamp,
}

/// What an L1 lookup found.
pub(crate) enum Lookup<T> {
    Hit(T),
    Miss,
    /// There is a live entry, but of another type.
    WrongType,
}

/// What a load's lookup found: a value of any age, with its lifetime.
#[derive(Clone)]
pub(crate) struct Found<T> {
    pub(crate) value: T,
    pub(crate) age: Age,
    pub(crate) stamp: Stamp,
}
