//! Security invalidation: values written before a moment, or sealed under a key id, refused
//! from now on and dropped from every tier.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Engine;
use crate::{
    Error,
    cache::codec::Codec,
    config::{ConfigError, FieldError},
};

/// What [`invalidate_for_security`](crate::MultiLevelCache::invalidate_for_security) revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Every value written before this moment, or before now if it is to come (values
    /// written before perf wrote write times count as written at the Unix epoch).
    WrittenBefore(SystemTime),
    /// Every value sealed under this id of `cache_encryption_keys`.
    KeyId(String),
}

impl Engine {
    pub(crate) async fn invalidate_for_security(
        &self,
        revocation: Revocation,
    ) -> Result<(), Error> {
        let (before, key_id) = match &revocation {
            Revocation::WrittenBefore(moment) => {
                // Not past now: a moment to come would refuse this instance's own new writes.
                let moment = (*moment).min(SystemTime::now());
                let since_epoch = moment.duration_since(UNIX_EPOCH).unwrap_or_default();
                let ms = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
                self.codec.revoked.revoke_before(ms);
                (Some(ms), None)
            }
            Revocation::KeyId(id) => {
                let current = self.codec.ring.as_ref().map(|ring| &*ring.current().id);
                if current == Some(id.as_str()) {
                    return Err(Error::Config(ConfigError::Invalid(vec![FieldError {
                        field: "cache_encryption_keys",
                        reason: format!(
                            "key {id:?} still seals new values: put a new key first, then \
                             revoke this one"
                        ),
                    }])));
                }
                self.codec.revoked.revoke_key_id(id);
                (None, Some(id.as_str()))
            }
        };
        tracing::warn!(
            ?revocation,
            "security invalidation: revoked values are dropped"
        );
        let (from_l1, from_l2) = {
            let _changing = self.changes.all();
            (
                self.l1.remove_where(|_, _| true),
                self.l2.remove_where(|_, entry| {
                    Codec::written_before_or_under(&entry.bytes, before, key_id)
                }),
            )
        };
        self.count_removals(from_l1, from_l2);
        if let Some(remote) = &self.remote {
            let cleared = remote.clear().await;
            self.removal_outcome(remote.as_ref(), cleared)?;
        }
        Ok(())
    }
}
