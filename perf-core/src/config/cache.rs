//! [`CacheConfig`]: the multi-level cache's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigSection, FieldError, Secret, duration_serde, require};

/// The cache's settings. Each field's documentation starts with its key (in TOML, and
/// upper-cased after `PERF_` in the environment) and its default.
///
/// The TTL and load defaults (`cache_ttl`, `cache_fail_safe_*`, `cache_soft_timeout`,
/// `cache_hard_timeout`, `cache_eager_refresh`, `cache_ttl_jitter`, `cache_failure_ttl`) and
/// `cache_enabled` can change at run time ([`HOT_FIELDS`](crate::HOT_FIELDS)), for entries
/// written and loads started afterwards; the rest need a restart.
///
/// `l2_max_bytes` must hold the largest entry (`max_key_bytes + max_value_bytes` plus the
/// encoding's header and L2's per-entry overhead); the cache checks that when it is built.
///
/// Settings may be added in any release, so the struct cannot be written as a literal
/// outside perf-core: start from [`Default`] and set fields (see [`PerformanceConfig`](super::PerformanceConfig)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `cache_enabled`, default true. When false, the `get_or_load` family and
    /// `#[cache_result]` call straight through to their loader, neither reading nor filling
    /// the cache; plain `get` and `set` still work. Changeable at run time
    /// ([`HOT_FIELDS`](crate::HOT_FIELDS)).
    #[serde(rename = "cache_enabled")]
    pub enabled: bool,
    /// `cache_ttl`, default 1 h. How long an entry stored without a TTL of its own stays
    /// fresh. Must be above zero.
    #[serde(rename = "cache_ttl", with = "duration_serde")]
    pub ttl: Duration,
    /// `cache_max_size`, default 10 000. L1's capacity, in entries (not bytes); beyond it
    /// L1 evicts. At least 1.
    #[serde(rename = "cache_max_size")]
    pub max_size: u64,
    /// `l2_max_bytes`, default 128 MiB. L2's capacity in bytes, counting each entry's key,
    /// encoded (possibly compressed) value and a fixed per-entry overhead.
    pub l2_max_bytes: u64,
    /// `compression_threshold_bytes`, default 512. Encoded values (L2 and Redis) larger than
    /// this many bytes are zstd-compressed.
    pub compression_threshold_bytes: u64,
    /// `zstd_level`, default 3. The zstd compression level, within zstd's own range
    /// (negative levels are faster and compress less).
    pub zstd_level: i32,
    /// `zstd_compress_literals`, default false. Also Huffman-code literals: compressed values
    /// about a sixth smaller, L2 hits about a quarter slower (building the Huffman table
    /// dominates small frames).
    pub zstd_compress_literals: bool,
    /// `max_key_bytes`, default 1024. Longer keys are refused with an error. Between 1 and
    /// 65 535.
    pub max_key_bytes: u64,
    /// `max_value_bytes`, default 4 MiB. Values whose serialized form is larger are refused
    /// with an error and not stored. Between 1 and 4 GiB.
    pub max_value_bytes: u64,
    /// `cache_sweep_interval`, default 30 s. How often the background sweeper removes expired
    /// entries from L1 and L2 (an expired entry is never served, but holds capacity until
    /// swept or evicted).
    #[serde(rename = "cache_sweep_interval", with = "duration_serde")]
    pub sweep_interval: Duration,
    /// `cache_fail_safe_max`, default 0 (off). Loaded values are kept this long past their
    /// TTL, and served as stale when a reload fails or times out.
    #[serde(rename = "cache_fail_safe_max", with = "duration_serde")]
    pub fail_safe_max: Duration,
    /// `cache_fail_safe_throttle`, default 30 s. After a failed reload served a stale value,
    /// that value is served as fresh for this long before the source is asked again. Must be
    /// above zero.
    #[serde(rename = "cache_fail_safe_throttle", with = "duration_serde")]
    pub fail_safe_throttle: Duration,
    /// `cache_soft_timeout`, default 0 (off). With a stale value at hand, a load's callers get
    /// it after this long while the load goes on and fills the cache when it ends. Not above
    /// `hard_timeout` when that is set.
    #[serde(rename = "cache_soft_timeout", with = "duration_serde")]
    pub soft_timeout: Duration,
    /// `cache_hard_timeout`, default 0 (off). A load's callers stop waiting after this long:
    /// they get the stale value if there is one, else
    /// [`Error::LoaderTimeout`](crate::Error::LoaderTimeout).
    #[serde(rename = "cache_hard_timeout", with = "duration_serde")]
    pub hard_timeout: Duration,
    /// `cache_eager_refresh`, default 0 (off). A value read after this fraction of its TTL
    /// is reloaded in the background while callers keep getting it. In `[0, 1)`.
    #[serde(rename = "cache_eager_refresh")]
    pub eager_refresh: f64,
    /// `cache_ttl_jitter`, default 0 (off). Each TTL is shortened by a random share of up to
    /// this fraction, so that keys written together do not expire together. In `[0, 1)`.
    #[serde(rename = "cache_ttl_jitter")]
    pub ttl_jitter: f64,
    /// `cache_failure_ttl`, default 0 (off). A failed load's error is handed to the callers
    /// of the next this-long without running the loader again.
    #[serde(rename = "cache_failure_ttl", with = "duration_serde")]
    pub failure_ttl: Duration,
    /// `cache_encryption_keys`, default none. A key ring: with one or more keys, every value
    /// written to L2 and the remote tier is authenticated (or encrypted, see
    /// `cache_value_protection`) under the first key, bound to its cache key and namespace,
    /// and values without a valid seal under a key of the ring are misses. Older keys still
    /// open what they sealed, so that keys can rotate: put the new key first, drop the old one
    /// once its values have expired. Each key is 32 random bytes in base64
    /// (`openssl rand -base64 32`), named by a short id stored in each value. Needs a restart.
    #[serde(rename = "cache_encryption_keys")]
    pub encryption_keys: Vec<EncryptionKey>,
    /// `cache_value_protection`, default `"encrypt"`. With a key ring, whether shared values
    /// are encrypted (AES-256-GCM) or only authenticated (HMAC-SHA256, readable by whoever
    /// reads Redis, but refused unless written by a holder of a key). A call can ask for
    /// encryption on its own (`#[cache_result(encrypt)]`, [`LoadOptions::encrypt`]).
    ///
    /// [`LoadOptions::encrypt`]: crate::cache::LoadOptions::encrypt
    #[serde(rename = "cache_value_protection")]
    pub value_protection: ValueProtection,
}

/// One key of `cache_encryption_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKey {
    /// The key's name, stored with every value sealed under it: 1 to 32 ASCII letters,
    /// digits, `-`, `_` or `.`.
    pub id: String,
    /// 32 bytes in base64.
    pub key: Secret,
}

impl EncryptionKey {
    /// A key named `id` holding `key` (32 bytes in base64).
    pub fn new(id: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key: Secret::new(key),
        }
    }

    /// The key's 32 bytes, or why they are not.
    pub(crate) fn bytes(&self) -> Result<[u8; 32], String> {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.key.expose().trim())
            .map_err(|_| format!("key `{}` is not base64", self.id))?;
        <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
            format!(
                "key `{}` is {} bytes; it must be 32 (`openssl rand -base64 32`)",
                self.id,
                decoded.len()
            )
        })
    }
}

/// How values are protected when `cache_encryption_keys` holds a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueProtection {
    /// Encrypted and authenticated (AES-256-GCM).
    #[default]
    Encrypt,
    /// Authenticated only (HMAC-SHA256): readable, but refused unless sealed by a key of
    /// the ring.
    Authenticate,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(3600),
            max_size: 10_000,
            l2_max_bytes: 128 * 1024 * 1024,
            compression_threshold_bytes: 512,
            zstd_level: 3,
            zstd_compress_literals: false,
            max_key_bytes: 1024,
            max_value_bytes: 4 * 1024 * 1024,
            sweep_interval: Duration::from_secs(30),
            fail_safe_max: Duration::ZERO,
            fail_safe_throttle: Duration::from_secs(30),
            soft_timeout: Duration::ZERO,
            hard_timeout: Duration::ZERO,
            eager_refresh: 0.0,
            ttl_jitter: 0.0,
            failure_ttl: Duration::ZERO,
            encryption_keys: Vec::new(),
            value_protection: ValueProtection::default(),
        }
    }
}

impl ConfigSection for CacheConfig {
    fn check(&self, bad: &mut Vec<FieldError>) {
        require(
            bad,
            !self.ttl.is_zero(),
            "cache_ttl",
            "must be greater than zero",
        );
        require(
            bad,
            self.max_size > 0,
            "cache_max_size",
            "must be at least 1",
        );
        let levels = zstd::compression_level_range();
        require(
            bad,
            levels.contains(&self.zstd_level),
            "zstd_level",
            format!("must be within {}..={}", levels.start(), levels.end()),
        );
        require(
            bad,
            self.max_key_bytes > 0,
            "max_key_bytes",
            "must be at least 1",
        );
        require(
            bad,
            self.max_key_bytes <= u64::from(u16::MAX),
            "max_key_bytes",
            format!("must be at most {}", u16::MAX),
        );
        require(
            bad,
            self.max_value_bytes > 0,
            "max_value_bytes",
            "must be at least 1",
        );
        require(
            bad,
            self.max_value_bytes <= u64::from(u32::MAX),
            "max_value_bytes",
            format!("must be at most {} (4 GiB)", u32::MAX),
        );
        require(
            bad,
            !self.sweep_interval.is_zero(),
            "cache_sweep_interval",
            "must be greater than zero",
        );
        require(
            bad,
            !self.fail_safe_throttle.is_zero(),
            "cache_fail_safe_throttle",
            "must be greater than zero",
        );
        for (field, value) in [
            ("cache_eager_refresh", self.eager_refresh),
            ("cache_ttl_jitter", self.ttl_jitter),
        ] {
            require(
                bad,
                (0.0..1.0).contains(&value),
                field,
                "must be a fraction in [0, 1) (0: off)",
            );
        }
        check_key_ring(bad, &self.encryption_keys);
        require(
            bad,
            self.hard_timeout.is_zero() || self.soft_timeout <= self.hard_timeout,
            "cache_soft_timeout",
            format!(
                "must not be above cache_hard_timeout ({:?})",
                self.hard_timeout
            ),
        );
    }
}

/// Every key decodes to 32 bytes, under a distinct, short, plain id.
fn check_key_ring(bad: &mut Vec<FieldError>, keys: &[EncryptionKey]) {
    const FIELD: &str = "cache_encryption_keys";
    for (at, key) in keys.iter().enumerate() {
        let id_ok = (1..=32).contains(&key.id.len())
            && key
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        require(
            bad,
            id_ok,
            FIELD,
            format!(
                "id {:?} must be 1 to 32 ASCII letters, digits, `-`, `_` or `.`",
                key.id
            ),
        );
        if let Err(why) = key.bytes() {
            require(bad, false, FIELD, why);
        }
        require(
            bad,
            !keys[..at].iter().any(|earlier| earlier.id == key.id),
            FIELD,
            format!("id {:?} is used twice", key.id),
        );
    }
}
