//! The cache's side of the remote tier: reads that reach it, batched reads, and invalidations
//! from other instances.

use std::sync::Arc;

use std::sync::Weak;

use super::Engine;
use crate::Error;
use crate::cache::{
    SharedValue, Tier,
    changes::Mark,
    codec,
    entry::{AnyValue, Found},
    remote::{Invalidation, InvalidationSink, RemoteTier},
    stamp::Stamp,
    stats::{Event, Op},
};

impl Engine {
    pub(crate) async fn get_many<T: SharedValue>(
        &self,
        keys: &[&str],
        tier: Tier,
    ) -> Result<Vec<Option<Arc<T>>>, Error> {
        for key in keys {
            self.check_key(key)?;
        }
        let tier = self.effective(tier);
        let mut found: Vec<Option<Arc<T>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let local = self.local_lookup(key, tier, Op::GetMany);
            if local.is_none() {
                missing.push(index);
            }
            found.push(local);
        }
        let remote = match &self.remote {
            Some(remote) if tier == Tier::Redis && !missing.is_empty() => remote,
            _ => return Ok(found),
        };
        let missing_keys: Vec<&str> = missing.iter().map(|&i| keys[i]).collect();
        let marks: Vec<Mark> = missing_keys
            .iter()
            .map(|key| self.changes.mark(key))
            .collect();
        let fetched = match remote.get_many(&missing_keys).await {
            Ok(fetched) if fetched.len() == missing_keys.len() => fetched,
            Ok(_) | Err(_) => {
                tracing::debug!("remote tier batch read failed; treated as misses");
                self.counters.record(Tier::Redis, Event::Error);
                vec![None; missing_keys.len()]
            }
        };
        for ((&index, bytes), mark) in missing.iter().zip(fetched).zip(marks) {
            found[index] = self
                .remote_accept(remote.as_ref(), keys[index], bytes, Op::GetMany, mark)
                .await
                .filter(|found| found.age.is_live())
                .map(|found| found.value);
        }
        Ok(found)
    }

    /// The remote value at `key` in any age (a stale one counted as a miss).
    pub(super) async fn remote_find<T: SharedValue>(
        &self,
        remote: &dyn RemoteTier,
        key: &str,
        op: Op,
    ) -> Option<Found<Arc<T>>> {
        let mark = self.changes.mark(key);
        let bytes = match remote.get(key).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(key, %error, "remote tier read failed; treated as a miss");
                self.counters.record(Tier::Redis, Event::Error);
                None
            }
        };
        self.remote_accept(remote, key, bytes, op, mark).await
    }

    /// Counts a remote read and copies a live hit into L2 and L1 with its remaining lifetime,
    /// unless the key was written or invalidated since `mark`, taken before the read began
    /// (see `changes.rs`): then the copy is taken back, and no copy older than the change
    /// survives it. The caller still gets what it read, as a read concurrent with a write may.
    async fn remote_accept<T: SharedValue>(
        &self,
        remote: &dyn RemoteTier,
        key: &str,
        bytes: Option<Vec<u8>>,
        op: Op,
        mark: Mark,
    ) -> Option<Found<Arc<T>>> {
        let counters = &self.counters;
        let decoded = match bytes {
            Some(bytes) => self.remote_decode::<T>(remote, key, bytes).await,
            None => None,
        };
        let Some((value, bytes, stamp)) = decoded else {
            counters.record(Tier::Redis, Event::Miss(op));
            return None;
        };
        let value = Arc::new(value);
        let age = stamp.age(&self.clock)?;
        if age.is_live() {
            counters.record(Tier::Redis, Event::Hit(op));
            let bytes: Arc<[u8]> = bytes.into();
            self.insert_l2(key, Arc::clone(&bytes), stamp);
            self.insert_l1(key, value.clone(), stamp);
            if !self.changes.unchanged(key, mark) {
                self.take_back(key, &value, &bytes);
            }
        } else {
            counters.record(Tier::Redis, Event::Miss(op));
        }
        Some(Found { value, age, stamp })
    }

    /// The remote value, its bytes and its lifetime from now. Bytes that are not our envelope,
    /// or whose seal does not verify, or that a security invalidation revoked, are deleted so
    /// that the next reader loads; an envelope around a value of another type (a rolling
    /// deploy that changed the type, another service in the namespace) is a counted type
    /// mismatch, and left for its owner, as is a value sealed under a key not in this
    /// instance's ring.
    async fn remote_decode<T: SharedValue>(
        &self,
        remote: &dyn RemoteTier,
        key: &str,
        bytes: Vec<u8>,
    ) -> Option<(T, Vec<u8>, Stamp)> {
        let counters = &self.counters;
        match self.codec.decode::<T>(&bytes, key) {
            Ok(decoded) => match Stamp::from_unix(decoded.times, self.clock.now(), true) {
                // Sealed under an older key of the ring: the local copies take the current one.
                Some(stamp) if decoded.stale_seal => match self.codec.reseal(&decoded, key) {
                    Ok(resealed) => Some((decoded.value, resealed, stamp)),
                    Err(_) => Some((decoded.value, bytes, stamp)),
                },
                Some(stamp) => Some((decoded.value, bytes, stamp)),
                None => {
                    counters.record(Tier::Redis, Event::Expiration);
                    None
                }
            },
            // Our envelope around a value of another type: another program's or another
            // version's entry, left alone.
            Err(error @ codec::DecodeError::Payload(_)) => {
                tracing::debug!(key, %error, "remote entry holds another type; a miss");
                counters.record(Tier::Redis, Event::TypeMismatch);
                None
            }
            // Sealed under a key this instance does not hold: another instance's, during a
            // rolling change of keys. A miss here, left for the instances that can open it.
            Err(error @ (codec::DecodeError::UnknownKey | codec::DecodeError::NoKeyRing)) => {
                tracing::debug!(key, %error, "remote entry sealed under another key; a miss");
                counters.record(Tier::Redis, Event::DecodeError);
                None
            }
            Err(error) => {
                tracing::debug!(key, %error, "remote entry does not decode; deleting it");
                counters.record(Tier::Redis, Event::DecodeError);
                if remote.delete(key).await.is_err() {
                    counters.record(Tier::Redis, Event::Error);
                }
                None
            }
        }
    }

    /// Removes a copy promoted by a read that raced an invalidation, if it is still ours.
    fn take_back<T: SharedValue>(&self, key: &str, value: &Arc<T>, bytes: &Arc<[u8]>) {
        let value: AnyValue = Arc::clone(value) as _;
        self.l1.remove_value(key, &value);
        self.l2
            .remove_if(key, |entry| Arc::ptr_eq(&entry.bytes, bytes));
        self.counters.record(Tier::Redis, Event::RacedInvalidation);
    }

    /// Drops local copies that another instance's write made stale.
    pub(crate) fn apply_invalidation(&self, invalidation: &Invalidation) {
        let (l1, l2) = (&self.l1, &self.l2);
        let changes = &self.changes;
        let (from_l1, from_l2) = match invalidation {
            Invalidation::Keys(keys) => {
                let (mut from_l1, mut from_l2) = (0, 0);
                for key in keys {
                    let _changing = changes.key(key);
                    from_l1 += u64::from(l1.remove(key));
                    from_l2 += u64::from(l2.remove(key));
                }
                (from_l1, from_l2)
            }
            Invalidation::Prefix(prefix) => {
                let _changing = changes.all();
                (
                    l1.remove_where(|key, _| key.starts_with(prefix.as_str())),
                    l2.remove_where(|key, _| key.starts_with(prefix.as_str())),
                )
            }
            Invalidation::All | Invalidation::Resync => {
                let _changing = changes.all();
                (
                    l1.remove_where(|_, entry| entry.stamp.shared),
                    l2.remove_where(|_, entry| entry.stamp.shared),
                )
            }
        };
        self.count_removals(from_l1, from_l2);
    }
}

/// The sink a cache gives its remote tier: invalidations reach the cache while it lives.
pub(super) fn invalidation_sink(engine: Weak<Engine>) -> InvalidationSink {
    Arc::new(move |invalidation: Invalidation| {
        if let Some(engine) = engine.upgrade() {
            engine.apply_invalidation(&invalidation);
        }
    })
}
