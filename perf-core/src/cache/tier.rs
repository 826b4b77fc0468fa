//! Tiers, and what each tier can hold.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Error;

/// A cache tier; as an argument, the deepest tier a value is stored in or read from.
///
/// Storing at a tier stores in it and every tier above: [`L2`](Tier::L2) means L1 and L2.
/// Reading at a tier looks from L1 down to it, and copies a hit into the tiers above with its
/// remaining TTL. Parsed from, and shown as, the seed's `cache_type` names `l1`, `l2` and
/// `redis`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), perf_core::Error> {
/// use perf_core::{MultiLevelCache, PerformanceConfig, Tier};
///
/// let cache = MultiLevelCache::new(&PerformanceConfig::default())?;
/// cache.set("ad:1", "banner".to_string(), Tier::L2, None).await?;
/// // In L1 and in L2: a synchronous read of L1 alone finds it.
/// let in_l1 = cache.get_l1_local::<String>("ad:1")?;
/// assert_eq!(in_l1.as_deref().map(String::as_str), Some("banner"));
/// assert_eq!(cache.stats().l2.inserts, 1);
///
/// // Without a remote tier, `Tier::Redis` is the deepest tier there is: L2.
/// assert!(!cache.has_remote_tier());
/// let hit = cache.get::<String>("ad:1", Tier::Redis).await?;
/// assert_eq!(hit.as_deref().map(String::as_str), Some("banner"));
///
/// assert_eq!("L2".parse::<Tier>()?, Tier::L2);
/// assert_eq!(Tier::Redis.to_string(), "redis");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// In process: typed values (`Arc<T>`, no encoding), so a hit is a lookup and a pointer
    /// copy. Bounded by entries (`cache_max_size`). Holds any [`CacheValue`].
    L1 = 0,
    /// In process: encoded bytes, zstd-compressed above `compression_threshold_bytes`, so more
    /// entries per byte than L1. Bounded by bytes (`l2_max_bytes`). Holds [`SharedValue`]s.
    L2 = 1,
    /// The remote tier ([`RemoteTier`](super::RemoteTier), perf-redis's Redis tier): the same
    /// bytes as L2, shared by every instance and kept by it when they restart. Without a
    /// remote tier, stores and reads at `Redis` stop at L2.
    Redis = 2,
}

impl Tier {
    /// Every tier, from the fastest (L1) to the deepest.
    pub const ALL: [Tier; 3] = [Tier::L1, Tier::L2, Tier::Redis];

    /// `"l1"`, `"l2"` or `"redis"`: the seed's `cache_type` and the `tier` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::Redis => "redis",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownTier(s.to_owned()))
    }
}

/// What L1 can hold: any value that can be shared between threads. Reads hand out `Arc<T>`,
/// so a hit never copies the value.
pub trait CacheValue: Send + Sync + 'static {}
impl<T: Send + Sync + 'static> CacheValue for T {}

/// What L2 and the remote tier can hold: a [`CacheValue`] that serde can encode.
pub trait SharedValue: CacheValue + Serialize + DeserializeOwned {}
impl<T: CacheValue + Serialize + DeserializeOwned> SharedValue for T {}
