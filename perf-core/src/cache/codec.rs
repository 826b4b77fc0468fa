//! The one value encoding shared by L2 and the remote tier.
//!
//! ```text
//! byte 0       format version (3)
//! byte 1       flags: bit 0 = payload is zstd-compressed, bit 1 = authenticated (HMAC),
//!              bit 2 = encrypted (AES-256-GCM); at most one of bits 1 and 2
//! bytes 2..10  end of freshness (eager refresh point, else expiry), Unix ms, little endian
//! bytes 10..18 expiry (end of the TTL), Unix ms
//! bytes 18..26 end of the fail-safe period (the value may be served stale until then), Unix ms
//! bytes 26..30 payload length before compression, little endian
//! bytes 30..38 when the value was written, Unix ms
//! byte 38      length n of the key id (0 unless bit 1 or 2 is set)
//! bytes 39..   the key id (n bytes), then
//!              plain:         payload
//!              authenticated: payload, HMAC-SHA256 tag (32 bytes)
//!              encrypted:     nonce (12 bytes), encrypted payload, GCM tag (16 bytes)
//! payload      MessagePack (rmp-serde), zstd-compressed when flagged
//! ```
//!
//! The three instants let a value read from the remote tier keep its remaining lifetime on
//! every instance, stale period included; the write time lets a security invalidation revoke
//! what was written before a moment. A seal (see `protect.rs`) covers the header, the
//! namespace and the cache key as well as the payload. Versions 1 (one expiry, a 14-byte
//! header) and 2 (no write time, never sealed) are still read, as written at time 0, so that
//! values written before an upgrade stay usable where values need no seal.
//!
//! MessagePack rather than postcard because it is self-describing: `serde_json::Value`,
//! untagged enums and `#[serde(flatten)]` round-trip, where postcard would fail at run time.

use std::{
    cell::Cell,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};

use super::protect::{AEAD_TAG_LEN, KeyRing, MAC_TAG_LEN, NONCE_LEN, Revoked};
use crate::{EncodeError, Error, config::ValueProtection, spare};

/// The fixed part of a version 3 header; a sealed value's key id follows it.
pub(crate) const HEADER_LEN: usize = 39;
/// The most a value's envelope adds to its payload: header, longest key id, nonce, longest tag.
pub(crate) const MAX_ENVELOPE: usize =
    HEADER_LEN + super::protect::MAX_KEY_ID + NONCE_LEN + MAC_TAG_LEN;
const VERSION: u8 = 3;
const V2_HEADER_LEN: usize = 30;
const V1_HEADER_LEN: usize = 14;
const FLAG_ZSTD: u8 = 1;
const FLAG_MAC: u8 = 2;
const FLAG_SEALED: u8 = 4;

/// Encoding settings, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    pub(crate) compression_threshold: usize,
    pub(crate) zstd_level: i32,
    /// Huffman-code literals too. Off by default: for a ~2 KiB record, values grow by about a
    /// sixth but decompress about a quarter faster, since building the Huffman table dominates
    /// small frames.
    pub(crate) compress_literals: bool,
    pub(crate) max_value_bytes: usize,
    /// `cache_encryption_keys`: with a ring, every value is sealed and unsealed ones are
    /// refused.
    pub(crate) ring: Option<Arc<KeyRing>>,
    /// The remote tier's namespace, bound into every seal.
    pub(crate) namespace: Arc<str>,
    /// What security invalidations revoked.
    pub(crate) revoked: Arc<Revoked>,
}

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("{0} bytes is shorter than the header")]
    Truncated(usize),
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("unknown flags {0:#x}")]
    Flags(u8),
    #[error("payload length {0} is over max_value_bytes")]
    TooLarge(usize),
    #[error("payload is not the length its header states")]
    Length,
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error("payload does not deserialize: {0}")]
    Payload(rmp_serde::decode::Error),
    #[error("value is not sealed, and cache_encryption_keys requires a seal")]
    Unsealed,
    #[error("value is sealed, and this cache has no cache_encryption_keys")]
    NoKeyRing,
    #[error("value is sealed under a key id not in cache_encryption_keys")]
    UnknownKey,
    #[error("seal does not verify: tampered, moved to another key, or another ring's")]
    BadSeal,
    #[error("revoked by a security invalidation")]
    Revoked,
}

/// A value's lifetime in Unix milliseconds, as the header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct UnixTimes {
    pub(crate) fresh_until: u64,
    pub(crate) expires_at: u64,
    pub(crate) stale_until: u64,
}

impl UnixTimes {
    /// The times `fresh`, `ttl` and `stale` from now.
    pub(crate) fn after(fresh: Duration, ttl: Duration, stale: Duration) -> Self {
        let now = unix_now();
        let at = |d: Duration| u64::try_from(now.saturating_add(d).as_millis()).unwrap_or(u64::MAX);
        Self {
            fresh_until: at(fresh),
            expires_at: at(ttl),
            stale_until: at(stale),
        }
    }

    /// One expiry for all three (a version 1 header).
    fn single(expires_at: u64) -> Self {
        Self {
            fresh_until: expires_at,
            expires_at,
            stale_until: expires_at,
        }
    }
}

/// A decoded value and what its header carries.
#[derive(Debug)]
pub(crate) struct Decoded<T> {
    pub(crate) value: T,
    pub(crate) times: UnixTimes,
    /// Sealed under a key of the ring other than the current one: a copy kept locally should
    /// be sealed again (see [`Codec::reseal`]).
    pub(crate) stale_seal: bool,
    /// Encrypted (rather than plain or authenticated only).
    pub(crate) encrypted: bool,
    /// When the value was written, Unix ms (0 for versions 1 and 2).
    pub(crate) written_at: u64,
}

/// How one value is to be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seal {
    /// As the configuration says: plain without a ring, else `cache_value_protection`.
    Default,
    /// Encrypted whatever `cache_value_protection` says (needs a ring).
    Encrypt,
}

/// A header's fields, for any format version.
struct Header<'a> {
    times: UnixTimes,
    payload_len: usize,
    flags: u8,
    written_at: u64,
    key_id: &'a [u8],
    /// The header's own length, key id included.
    len: usize,
}

thread_local! {
    static COMPRESSOR: Cell<Option<((i32, bool), zstd::bulk::Compressor<'static>)>> = const { Cell::new(None) };
    static DECOMPRESSOR: Cell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> = const { Cell::new(None) };
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now in Unix milliseconds.
pub(crate) fn unix_now_ms() -> u64 {
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}

/// Time left until a Unix-millisecond instant; zero once it has passed.
pub(crate) fn remaining_until(unix_ms: u64) -> Duration {
    Duration::from_millis(unix_ms).saturating_sub(unix_now())
}

/// What a seal binds besides the header: the namespace (length-prefixed, so that no
/// namespace and key pair reads as another) and the cache key.
fn binding(namespace: &str, key: &str) -> Vec<u8> {
    let mut bound = Vec::with_capacity(8 + namespace.len() + key.len());
    bound.extend_from_slice(b"perf\x03");
    bound.extend_from_slice(&(namespace.len() as u64).to_le_bytes());
    bound.extend_from_slice(namespace.as_bytes());
    bound.extend_from_slice(key.as_bytes());
    bound
}

impl Codec {
    /// Settings without a key ring or namespace (the builder adds them).
    pub(crate) fn plain(
        compression_threshold: usize,
        zstd_level: i32,
        compress_literals: bool,
        max_value_bytes: usize,
    ) -> Self {
        Self {
            compression_threshold,
            zstd_level,
            compress_literals,
            max_value_bytes,
            ring: None,
            namespace: Arc::from(""),
            revoked: Arc::default(),
        }
    }

    /// How a value asked to be sealed `seal` is: its key and flag, or none.
    fn sealing(&self, seal: Seal) -> Result<Option<(&KeyRing, u8)>, Error> {
        let Some(ring) = &self.ring else {
            return match seal {
                Seal::Default => Ok(None),
                Seal::Encrypt => Err(Error::NoEncryptionKeys),
            };
        };
        let flag = match (seal, ring.protection) {
            (Seal::Encrypt, _) | (Seal::Default, ValueProtection::Encrypt) => FLAG_SEALED,
            (Seal::Default, ValueProtection::Authenticate) => FLAG_MAC,
        };
        Ok(Some((ring, flag)))
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        times: UnixTimes,
        key: &str,
        seal: Seal,
    ) -> Result<Vec<u8>, Error> {
        self.encode_written_at(value, times, unix_now_ms(), key, seal)
    }

    /// `decoded`, sealed again under the current key, as protected as it was and with its
    /// write time, so that a security invalidation still sees how old it is.
    pub(crate) fn reseal<T: Serialize>(
        &self,
        decoded: &Decoded<T>,
        key: &str,
    ) -> Result<Vec<u8>, Error> {
        let seal = if decoded.encrypted {
            Seal::Encrypt
        } else {
            Seal::Default
        };
        self.encode_written_at(&decoded.value, decoded.times, decoded.written_at, key, seal)
    }

    fn encode_written_at<T: Serialize + ?Sized>(
        &self,
        value: &T,
        times: UnixTimes,
        written_at: u64,
        key: &str,
        seal: Seal,
    ) -> Result<Vec<u8>, Error> {
        let sealing = self.sealing(seal)?;
        let key_id: &[u8] = sealing.map_or(&[], |(ring, _)| ring.current().id.as_bytes());
        let header_len = HEADER_LEN + key_id.len();
        let payload_at = match sealing {
            Some((_, FLAG_SEALED)) => header_len + NONCE_LEN,
            _ => header_len,
        };
        let mut out = vec![0u8; payload_at];
        rmp_serde::encode::write(&mut out, value)
            .map_err(|error| Error::Encode(EncodeError::new(error)))?;
        let payload_len = out.len() - payload_at;
        if payload_len > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                len: payload_len,
                limit: self.max_value_bytes,
                limit_name: "max_value_bytes",
            });
        }
        let mut flags = 0;
        if payload_len > self.compression_threshold
            && let Some(compressed) = self.compress(&out[payload_at..])
        {
            out.truncate(payload_at);
            out.extend_from_slice(&compressed);
            flags |= FLAG_ZSTD;
        }
        out[0] = VERSION;
        out[2..10].copy_from_slice(&times.fresh_until.to_le_bytes());
        out[10..18].copy_from_slice(&times.expires_at.to_le_bytes());
        out[18..26].copy_from_slice(&times.stale_until.to_le_bytes());
        // payload_len <= max_value_bytes <= u32::MAX, which validation enforces.
        out[26..30].copy_from_slice(&(payload_len as u32).to_le_bytes());
        out[30..38].copy_from_slice(&written_at.to_le_bytes());
        // Ids are at most 32 bytes (validated with the configuration).
        out[38] = key_id.len() as u8;
        out[HEADER_LEN..header_len].copy_from_slice(key_id);
        let Some((ring, flag)) = sealing else {
            out[1] = flags;
            return Ok(out);
        };
        out[1] = flags | flag;
        let ring_key = ring.current();
        let bound = binding(&self.namespace, key);
        if flag == FLAG_MAC {
            let tag = ring_key.mac(&[&bound, &out]);
            out.extend_from_slice(&tag);
        } else {
            let nonce = ring.next_nonce();
            out[header_len..payload_at].copy_from_slice(&nonce);
            let (head, payload) = out.split_at_mut(payload_at);
            let mut aad = bound;
            aad.extend_from_slice(&head[..header_len]);
            let tag = ring_key.seal(nonce, &aad, payload);
            out.extend_from_slice(&tag);
        }
        Ok(out)
    }

    /// Compressed bytes, or `None` when compression fails or does not make the payload smaller.
    fn compress(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let settings = (self.zstd_level, self.compress_literals);
        let spare = spare::take(&COMPRESSOR).filter(|(made_for, _)| *made_for == settings);
        let mut compressor = match spare {
            Some((_, compressor)) => compressor,
            None => self.compressor().ok()?,
        };
        let compressed = compressor.compress(payload).ok();
        spare::keep(&COMPRESSOR, (settings, compressor));
        compressed.filter(|compressed| compressed.len() < payload.len())
    }

    fn compressor(&self) -> std::io::Result<zstd::bulk::Compressor<'static>> {
        use zstd::zstd_safe::{CParameter, ParamSwitch};
        let mut compressor = zstd::bulk::Compressor::new(self.zstd_level)?;
        let literals = if self.compress_literals {
            ParamSwitch::Enable
        } else {
            ParamSwitch::Disable
        };
        compressor.set_parameter(CParameter::LiteralCompressionMode(literals))?;
        Ok(compressor)
    }

    /// The value in `bytes`, stored under `key`: its seal checked against the ring, its
    /// payload decompressed and deserialized.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        key: &str,
    ) -> Result<Decoded<T>, DecodeError> {
        let header = header(bytes)?;
        let flags = header.flags;
        if flags & !(FLAG_ZSTD | FLAG_MAC | FLAG_SEALED) != 0
            || flags & (FLAG_MAC | FLAG_SEALED) == FLAG_MAC | FLAG_SEALED
        {
            return Err(DecodeError::Flags(flags));
        }
        if header.payload_len > self.max_value_bytes {
            return Err(DecodeError::TooLarge(header.payload_len));
        }
        if self.revoked.refuses(header.written_at, header.key_id) {
            return Err(DecodeError::Revoked);
        }
        let sealed_by = match (&self.ring, flags & (FLAG_MAC | FLAG_SEALED)) {
            // A key id names a sealing key: on an unsealed value it can only be corruption.
            (_, 0) if !header.key_id.is_empty() => return Err(DecodeError::Flags(flags)),
            (None, 0) => None,
            (None, _) => return Err(DecodeError::NoKeyRing),
            (Some(_), 0) => return Err(DecodeError::Unsealed),
            (Some(ring), _) => Some(ring.find(header.key_id).ok_or(DecodeError::UnknownKey)?),
        };
        let stale_seal = sealed_by.is_some_and(|(_, current)| !current);
        let compressed = flags & FLAG_ZSTD != 0;
        let value = match sealed_by {
            None => payload_value(&bytes[header.len..], header.payload_len, compressed)?,
            Some((ring_key, _)) if flags & FLAG_MAC != 0 => {
                let tag_at = bytes
                    .len()
                    .checked_sub(MAC_TAG_LEN)
                    .filter(|&at| at >= header.len)
                    .ok_or(DecodeError::Truncated(bytes.len()))?;
                let bound = binding(&self.namespace, key);
                if !ring_key.verify(&[&bound, &bytes[..tag_at]], &bytes[tag_at..]) {
                    return Err(DecodeError::BadSeal);
                }
                payload_value(&bytes[header.len..tag_at], header.payload_len, compressed)?
            }
            Some((ring_key, _)) => {
                let payload_at = header.len + NONCE_LEN;
                if bytes.len() < payload_at + AEAD_TAG_LEN {
                    return Err(DecodeError::Truncated(bytes.len()));
                }
                let mut nonce = [0; NONCE_LEN];
                nonce.copy_from_slice(&bytes[header.len..payload_at]);
                let mut aad = binding(&self.namespace, key);
                aad.extend_from_slice(&bytes[..header.len]);
                let mut in_out = bytes[payload_at..].to_vec();
                let payload = ring_key
                    .open(nonce, &aad, &mut in_out)
                    .ok_or(DecodeError::BadSeal)?;
                payload_value(payload, header.payload_len, compressed)?
            }
        };
        Ok(Decoded {
            value,
            times: header.times,
            stale_seal,
            encrypted: flags & FLAG_SEALED != 0,
            written_at: header.written_at,
        })
    }

    /// Whether the value in `bytes` was written before `unix_ms` or sealed under `key_id`,
    /// from its header alone; bytes without our header are not.
    pub(crate) fn written_before_or_under(
        bytes: &[u8],
        unix_ms: Option<u64>,
        key_id: Option<&str>,
    ) -> bool {
        header(bytes).is_ok_and(|header| {
            unix_ms.is_some_and(|before| header.written_at < before)
                || key_id.is_some_and(|id| header.key_id == id.as_bytes())
        })
    }
}

/// The value in an unsealed payload of `payload_len` bytes before compression.
fn payload_value<T: DeserializeOwned>(
    payload: &[u8],
    payload_len: usize,
    compressed: bool,
) -> Result<T, DecodeError> {
    if !compressed {
        if payload.len() != payload_len {
            return Err(DecodeError::Length);
        }
        return from_msgpack(payload);
    }
    with_decompressed(payload, payload_len, from_msgpack)?
}

/// Nesting deeper than this is refused. rmp-serde's own limit (1024) is too deep for a
/// recursive type (`serde_json::Value`, a user's tree) on a 2 MiB thread stack, where about
/// 600 levels overflow in a debug build: an abort, which no caller could turn into a miss.
const MAX_NESTING: usize = 128;

fn from_msgpack<T: DeserializeOwned>(raw: &[u8]) -> Result<T, DecodeError> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(raw);
    deserializer.set_max_depth(MAX_NESTING);
    T::deserialize(&mut deserializer).map_err(DecodeError::Payload)
}

/// Versions 1 and 2 know compression only.
fn legacy_flags(flags: u8) -> Result<u8, DecodeError> {
    if flags & !FLAG_ZSTD != 0 {
        return Err(DecodeError::Flags(flags));
    }
    Ok(flags)
}

/// The header's fields, for any format version.
fn header(bytes: &[u8]) -> Result<Header<'_>, DecodeError> {
    let truncated = || DecodeError::Truncated(bytes.len());
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(truncated)
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or_else(truncated)
    };
    let flags = bytes.get(1).copied().unwrap_or_default();
    let v2_times = || -> Result<UnixTimes, DecodeError> {
        Ok(UnixTimes {
            fresh_until: u64_at(2)?,
            expires_at: u64_at(10)?,
            stale_until: u64_at(18)?,
        })
    };
    match bytes.first() {
        Some(&VERSION) => {
            let id_len = usize::from(*bytes.get(38).ok_or_else(truncated)?);
            let len = HEADER_LEN + id_len;
            Ok(Header {
                times: v2_times()?,
                payload_len: u32_at(26)?,
                flags,
                written_at: u64_at(30)?,
                key_id: bytes.get(HEADER_LEN..len).ok_or_else(truncated)?,
                len,
            })
        }
        Some(2) => Ok(Header {
            times: v2_times()?,
            payload_len: u32_at(26)?,
            flags: legacy_flags(flags)?,
            written_at: 0,
            key_id: &[],
            len: V2_HEADER_LEN,
        }),
        Some(1) => Ok(Header {
            times: UnixTimes::single(u64_at(2)?),
            payload_len: u32_at(10)?,
            flags: legacy_flags(flags)?,
            written_at: 0,
            key_id: &[],
            len: V1_HEADER_LEN,
        }),
        None => Err(truncated()),
        Some(&other) => Err(DecodeError::Version(other)),
    }
}

/// Runs `f` over the decompressed payload, reusing this thread's zstd context and buffer.
fn with_decompressed<R>(
    payload: &[u8],
    payload_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, DecodeError> {
    let (mut decompressor, mut buffer) = match spare::take(&DECOMPRESSOR) {
        Some(spare) => spare,
        None => (
            zstd::bulk::Decompressor::new().map_err(DecodeError::Zstd)?,
            Vec::new(),
        ),
    };
    buffer.clear();
    // Exact: the claimed length is at most max_value_bytes, and no more is allocated.
    buffer.reserve_exact(payload_len);
    let result = match decompressor.decompress_to_buffer(payload, &mut buffer) {
        Ok(written) if written == payload_len => Ok(f(&buffer)),
        Ok(_) => Err(DecodeError::Length),
        Err(error) => Err(DecodeError::Zstd(error)),
    };
    // Do not keep a huge buffer alive on this thread after one large value.
    if buffer.capacity() > 1 << 20 {
        buffer = Vec::new();
    }
    spare::keep(&DECOMPRESSOR, (decompressor, buffer));
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn codec() -> Codec {
        Codec::plain(64, 3, false, 1 << 20)
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ad {
        id: u64,
        title: String,
        tags: Vec<String>,
        bid: f64,
        extra: BTreeMap<String, String>,
    }

    fn ad(text_len: usize) -> Ad {
        Ad {
            id: 7,
            title: "running shoes ".repeat(text_len / 14 + 1),
            tags: vec!["sport".into(), "shoes".into()],
            bid: 1.25,
            extra: BTreeMap::from([("country".into(), "DE".into())]),
        }
    }

    #[test]
    fn small_values_round_trip_uncompressed() {
        let times = UnixTimes {
            fresh_until: 40,
            expires_at: 42,
            stale_until: 99,
        };
        let bytes = codec()
            .encode(&ad(10), times, "k", Seal::Default)
            .expect("encodes");
        assert_eq!(bytes[1], 0, "below the threshold: not compressed");
        let decoded = codec().decode::<Ad>(&bytes, "k").expect("decodes");
        assert_eq!(decoded.value, ad(10));
        assert_eq!(decoded.times, times);
    }

    #[test]
    fn large_values_round_trip_compressed_and_smaller() {
        let value = ad(4000);
        let bytes = codec()
            .encode(&value, UnixTimes::single(1), "k", Seal::Default)
            .expect("encodes");
        assert_eq!(bytes[1], FLAG_ZSTD);
        assert!(
            bytes.len() < 1000,
            "repetitive text compresses: {}",
            bytes.len()
        );
        assert_eq!(
            codec().decode::<Ad>(&bytes, "k").expect("decodes").value,
            value
        );
    }

    #[test]
    fn compressing_literals_is_smaller_and_still_round_trips() {
        let value = ad(4000);
        let plain = codec()
            .encode(&value, UnixTimes::single(1), "k", Seal::Default)
            .expect("encodes");
        let huffman = Codec {
            compress_literals: true,
            ..codec()
        };
        let smaller = huffman
            .encode(&value, UnixTimes::single(1), "k", Seal::Default)
            .expect("encodes");
        assert!(
            smaller.len() <= plain.len(),
            "{} > {}",
            smaller.len(),
            plain.len()
        );
        // Either encoding decodes with any settings: the frame says what it holds.
        assert_eq!(
            codec().decode::<Ad>(&smaller, "k").expect("decodes").value,
            value
        );
        assert_eq!(
            huffman.decode::<Ad>(&plain, "k").expect("decodes").value,
            value
        );
    }

    #[test]
    fn self_describing_types_round_trip() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(u64),
            Text(String),
        }
        let value = vec![Either::Num(3), Either::Text("x".repeat(100))];
        let bytes = codec()
            .encode(&value, UnixTimes::single(1), "k", Seal::Default)
            .expect("encodes");
        assert_eq!(
            codec()
                .decode::<Vec<Either>>(&bytes, "k")
                .expect("decodes")
                .value,
            value
        );
    }

    #[test]
    fn oversized_values_are_refused_naming_the_limit() {
        let small = Codec {
            max_value_bytes: 100,
            ..codec()
        };
        let err = small
            .encode(&"x".repeat(200), UnixTimes::single(1), "k", Seal::Default)
            .expect_err("too large");
        assert!(err.to_string().contains("max_value_bytes = 100"), "{err}");
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let good = codec()
            .encode(&ad(4000), UnixTimes::single(1), "k", Seal::Default)
            .expect("encodes");
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![1, 0, 0], good[..good.len() / 2].to_vec()];
        let mut wrong_version = good.clone();
        wrong_version[0] = 9;
        cases.push(wrong_version);
        let mut wrong_flags = good.clone();
        wrong_flags[1] = 0x80;
        cases.push(wrong_flags);
        let mut bomb = good.clone();
        bomb[26..30].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(bomb);
        let mut flipped = good.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0xff;
        cases.push(flipped);
        for case in cases {
            assert!(codec().decode::<Ad>(&case, "k").is_err(), "{case:?}");
        }
        // Valid bytes of another type are a decode error too.
        assert!(codec().decode::<Vec<u64>>(&good, "k").is_err());
    }

    #[test]
    fn remaining_ttl_from_the_header() {
        let ten = Duration::from_secs(10);
        let times = UnixTimes::after(ten, ten, ten * 2);
        let left = remaining_until(times.expires_at);
        assert!(left > Duration::from_secs(9) && left <= ten);
        assert!(remaining_until(times.stale_until) > Duration::from_secs(19));
        assert_eq!(remaining_until(1), Duration::ZERO);
    }

    #[test]
    fn version_1_values_still_decode_with_one_expiry() {
        let mut v1 = vec![1u8, 0];
        v1.extend_from_slice(&77u64.to_le_bytes());
        let payload = rmp_serde::to_vec(&5u32).expect("encodes");
        v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v1.extend_from_slice(&payload);
        let decoded = codec().decode::<u32>(&v1, "k").expect("decodes");
        assert_eq!(decoded.value, 5);
        assert_eq!(decoded.times, UnixTimes::single(77));
    }

    #[test]
    fn version_2_values_still_decode_unsealed_as_written_at_the_epoch() {
        let payload = rmp_serde::to_vec(&"v2").expect("encodes");
        let mut v2 = vec![2u8, 0];
        for at in [10u64, 20, 30] {
            v2.extend_from_slice(&at.to_le_bytes());
        }
        v2.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v2.extend_from_slice(&payload);
        let decoded = codec().decode::<String>(&v2, "k").expect("decodes");
        assert_eq!((decoded.value.as_str(), decoded.written_at), ("v2", 0));
        assert_eq!(decoded.times.stale_until, 30);
        assert!(Codec::written_before_or_under(&v2, Some(1), None));
        // Bits that only version 3 knows are not read into a version 2 header.
        v2[1] = FLAG_MAC;
        assert!(matches!(
            codec().decode::<String>(&v2, "k"),
            Err(DecodeError::Flags(_))
        ));
    }

    // ----- sealed values -----

    const NEW: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OLD: &str = "HxobHBscGxwbHBscGxwbHBscGxwbHBscGxwbHBscGxw=";
    const FOREIGN: &str = "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo=";

    fn sealed(keys: &[(&str, &str)], protection: ValueProtection) -> Codec {
        let keys: Vec<_> = keys
            .iter()
            .map(|(id, key)| crate::config::EncryptionKey::new(*id, *key))
            .collect();
        Codec {
            ring: KeyRing::new(&keys, protection)
                .expect("valid keys")
                .map(Arc::new),
            namespace: Arc::from("ads"),
            ..codec()
        }
    }

    fn both_rings() -> [Codec; 2] {
        [
            sealed(&[("new", NEW), ("old", OLD)], ValueProtection::Encrypt),
            sealed(&[("new", NEW), ("old", OLD)], ValueProtection::Authenticate),
        ]
    }

    #[test]
    fn sealed_values_round_trip_and_encrypted_ones_hide_their_payload() {
        let [encrypting, authenticating] = both_rings();
        for size in [10, 4000] {
            let value = ad(size);
            let secret = encrypting
                .encode(&value, UnixTimes::single(9), "ad:1", Seal::Default)
                .expect("encodes");
            let signed = authenticating
                .encode(&value, UnixTimes::single(9), "ad:1", Seal::Default)
                .expect("encodes");
            assert_eq!(secret[1] & FLAG_SEALED, FLAG_SEALED);
            assert_eq!(signed[1] & FLAG_MAC, FLAG_MAC);
            let needle = b"running shoes";
            let contains = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            assert!(!contains(&secret), "encrypted: the title is not readable");
            if size == 10 {
                assert!(contains(&signed), "authenticated only: readable");
            }
            // Either ring opens both kinds: protection says how to write, not what to read.
            for codec in [&encrypting, &authenticating] {
                for bytes in [&secret, &signed] {
                    let decoded = codec.decode::<Ad>(bytes, "ad:1").expect("opens");
                    assert_eq!(decoded.value, value);
                    assert_eq!(decoded.times, UnixTimes::single(9));
                    assert!(!decoded.stale_seal);
                }
            }
        }
        let encrypted = authenticating
            .encode(&ad(10), UnixTimes::single(9), "ad:1", Seal::Encrypt)
            .expect("encodes");
        assert_eq!(encrypted[1] & FLAG_SEALED, FLAG_SEALED, "the call's choice");
    }

    #[test]
    fn tampered_truncated_moved_and_foreign_values_do_not_open() {
        for codec in both_rings() {
            let good = codec
                .encode(&ad(4000), UnixTimes::single(9), "ad:1", Seal::Default)
                .expect("encodes");
            let refused = |bytes: &[u8], key: &str| codec.decode::<Ad>(bytes, key).is_err();
            assert!(!refused(&good, "ad:1"));
            assert!(refused(&good, "ad:2"), "moved to another key");
            let other_namespace = Codec {
                namespace: Arc::from("billing"),
                ..codec.clone()
            };
            assert!(
                other_namespace.decode::<Ad>(&good, "ad:1").is_err(),
                "moved"
            );
            for at in 0..good.len() {
                let mut flipped = good.clone();
                flipped[at] ^= 0x01;
                assert!(refused(&flipped, "ad:1"), "byte {at} flipped");
            }
            for len in 0..good.len() {
                assert!(refused(&good[..len], "ad:1"), "truncated to {len}");
            }
            let mut longer = good.clone();
            longer.push(0);
            assert!(refused(&longer, "ad:1"), "extended");
            // The same key id under another ring's key: a forgery.
            let foreign = sealed(
                &[("new", FOREIGN)],
                codec.ring.as_ref().expect("ring").protection,
            );
            let forged = foreign
                .encode(&ad(4000), UnixTimes::single(9), "ad:1", Seal::Default)
                .expect("encodes");
            assert!(matches!(
                codec.decode::<Ad>(&forged, "ad:1"),
                Err(DecodeError::BadSeal)
            ));
        }
    }

    #[test]
    fn unsealed_values_are_refused_by_a_ring_and_sealed_ones_without_one() {
        let [ring, _] = both_rings();
        let plain = codec()
            .encode(&5u64, UnixTimes::single(9), "k", Seal::Default)
            .expect("encodes");
        assert!(matches!(
            ring.decode::<u64>(&plain, "k"),
            Err(DecodeError::Unsealed)
        ));
        let secret = ring
            .encode(&5u64, UnixTimes::single(9), "k", Seal::Default)
            .expect("encodes");
        assert!(matches!(
            codec().decode::<u64>(&secret, "k"),
            Err(DecodeError::NoKeyRing)
        ));
        let err = codec()
            .encode(&5u64, UnixTimes::single(9), "k", Seal::Encrypt)
            .expect_err("no key to encrypt with");
        assert!(matches!(err, Error::NoEncryptionKeys), "{err}");
    }

    #[test]
    fn old_keys_open_and_ask_to_be_resealed_removed_keys_do_not_open() {
        let before = sealed(&[("old", OLD)], ValueProtection::Encrypt);
        let rotated = sealed(&[("new", NEW), ("old", OLD)], ValueProtection::Encrypt);
        let retired = sealed(&[("new", NEW)], ValueProtection::Encrypt);
        let times = UnixTimes::single(9);
        let written = before
            .encode(&ad(10), times, "ad:1", Seal::Default)
            .expect("encodes");
        let decoded = rotated.decode::<Ad>(&written, "ad:1").expect("opens");
        assert!(decoded.stale_seal && decoded.encrypted);
        let resealed = rotated.reseal(&decoded, "ad:1").expect("reseals");
        let again = retired.decode::<Ad>(&resealed, "ad:1").expect("new key");
        assert_eq!(again.value, ad(10));
        assert_eq!(again.times, times);
        assert_eq!(again.written_at, decoded.written_at, "keeps its write time");
        assert!(!again.stale_seal);
        assert!(matches!(
            retired.decode::<Ad>(&written, "ad:1"),
            Err(DecodeError::UnknownKey)
        ));
    }

    #[test]
    fn revoked_values_are_refused_by_write_time_or_key_id() {
        let [ring, _] = both_rings();
        let bytes = ring
            .encode(&5u64, UnixTimes::single(u64::MAX), "k", Seal::Default)
            .expect("encodes");
        let written_at = ring.decode::<u64>(&bytes, "k").expect("opens").written_at;
        assert!(written_at > 0);
        assert!(Codec::written_before_or_under(
            &bytes,
            Some(written_at + 1),
            None
        ));
        assert!(!Codec::written_before_or_under(
            &bytes,
            Some(written_at),
            None
        ));
        assert!(Codec::written_before_or_under(&bytes, None, Some("new")));
        assert!(!Codec::written_before_or_under(&bytes, None, Some("old")));
        assert!(!Codec::written_before_or_under(
            b"junk",
            Some(u64::MAX),
            None
        ));

        ring.revoked.revoke_key_id("old");
        assert!(ring.decode::<u64>(&bytes, "k").is_ok());
        ring.revoked.revoke_before(written_at + 1);
        assert!(matches!(
            ring.decode::<u64>(&bytes, "k"),
            Err(DecodeError::Revoked)
        ));
        let other = both_rings()[0].clone();
        other.revoked.revoke_key_id("new");
        assert!(matches!(
            other.decode::<u64>(&bytes, "k"),
            Err(DecodeError::Revoked)
        ));
    }
}
