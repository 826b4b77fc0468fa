//! Tags: drop every entry written under a tag at once, in every tier and on every instance.
//!
//! A tag has a generation, a random number the cache stores for it at `__tag:{tag}` (in the
//! shared tier when there is one, so that every instance reads the same). A tagged key carries
//! the generations of its tags: `{key}#{g1:016x}{g2:016x}..`. Invalidating a tag stores a new
//! generation, a shared write like any other: every instance drops its copy of the old one
//! (announced by the backplane, or replayed after an outage) and makes new tagged keys, so
//! entries written under the old generation are never read again and leave with their TTL or
//! by eviction. Nothing is scanned and no index is kept; the price is one lookup per tag when a
//! tagged key is made (an L1 hit but for the first time after a change), and stale entries
//! holding capacity until they go. The query cache's tables are tags of this kind.

use std::{fmt::Write, time::Duration};

use super::Engine;
use crate::Error;
use crate::cache::{Tier, random_id};

/// How long a tag's generation is kept without being invalidated; past it, a new one
/// starts, which only costs misses.
pub(crate) const GENERATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn generation_key(tag: &str) -> String {
    format!("__tag:{tag}")
}

impl Engine {
    pub(crate) async fn tagged_key(&self, key: &str, tags: &[&str]) -> String {
        let mut tagged = String::with_capacity(key.len() + 1 + 16 * tags.len());
        tagged.push_str(key);
        tagged.push('#');
        for tag in tags {
            let generation = self.tag_generation(tag).await;
            let _ = write!(tagged, "{generation:016x}");
        }
        tagged
    }

    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        let written = self
            .set(
                &generation_key(tag),
                random_id(),
                Tier::Redis,
                Some(GENERATION_TTL),
            )
            .await;
        match written {
            Err(Error::RemoteQueued(error)) => {
                tracing::debug!(%error, tag, "tag invalidation queued for the shared tier");
                Ok(())
            }
            other => other,
        }
    }

    /// `tag`'s current generation; a new one when the cache has none. When the cache cannot
    /// be read or written, a new one each time: nothing tagged is served from the cache.
    pub(crate) async fn tag_generation(&self, tag: &str) -> u64 {
        let key = generation_key(tag);
        if let Ok(Some(generation)) = self.get::<u64>(&key, Tier::Redis).await {
            return *generation;
        }
        let generation = random_id();
        if let Err(error) = self
            .set(&key, generation, Tier::Redis, Some(GENERATION_TTL))
            .await
        {
            tracing::debug!(%error, tag, "a tag generation was not stored");
        }
        generation
    }
}
