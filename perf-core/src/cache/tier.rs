//! Tiers, and what each tier can hold.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Error;

/// A cache tier; as an argument, the deepest tier a value is stored in or read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    L1 = 0,
    L2 = 1,
    Redis = 2,
}

impl Tier {
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
