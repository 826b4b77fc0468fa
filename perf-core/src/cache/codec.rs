//! The one value encoding shared by L2 and the remote tier.
//!
//! ```text
//! byte 0       format version (2)
//! byte 1       flags: bit 0 = payload is zstd-compressed
//! bytes 2..10  end of freshness (eager refresh point, else expiry), Unix ms, little endian
//! bytes 10..18 expiry (end of the TTL), Unix ms
//! bytes 18..26 end of the fail-safe period (the value may be served stale until then), Unix ms
//! bytes 26..30 payload length before compression, little endian
//! bytes 30..   payload: MessagePack (rmp-serde), zstd-compressed when flagged
//! ```
//!
//! The three instants let a value read from the remote tier keep its remaining lifetime on
//! every instance, stale period included. Version 1 (one expiry, a 14-byte header) is still
//! read, so that values written before an upgrade stay usable.
//!
//! MessagePack rather than postcard because it is self-describing: `serde_json::Value`,
//! untagged enums and `#[serde(flatten)]` round-trip, where postcard would fail at run time.

use std::{
    cell::RefCell,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::{EncodeError, Error};

pub(crate) const HEADER_LEN: usize = 30;
const VERSION: u8 = 2;
const V1_HEADER_LEN: usize = 14;
const FLAG_ZSTD: u8 = 1;

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

/// A decoded value and the lifetime its header carries.
#[derive(Debug)]
pub(crate) struct Decoded<T> {
    pub(crate) value: T,
    pub(crate) times: UnixTimes,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<((i32, bool), zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Time left until a Unix-millisecond instant; zero once it has passed.
pub(crate) fn remaining_until(unix_ms: u64) -> Duration {
    Duration::from_millis(unix_ms).saturating_sub(unix_now())
}

impl Codec {
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        times: UnixTimes,
    ) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; HEADER_LEN];
        rmp_serde::encode::write(&mut out, value)
            .map_err(|error| Error::Encode(EncodeError::new(error)))?;
        let payload_len = out.len() - HEADER_LEN;
        if payload_len > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                len: payload_len,
                limit: self.max_value_bytes,
                limit_name: "max_value_bytes",
            });
        }
        let mut flags = 0;
        if payload_len > self.compression_threshold
            && let Some(compressed) = self.compress(&out[HEADER_LEN..])
        {
            out.truncate(HEADER_LEN);
            out.extend_from_slice(&compressed);
            flags |= FLAG_ZSTD;
        }
        out[0] = VERSION;
        out[1] = flags;
        out[2..10].copy_from_slice(&times.fresh_until.to_le_bytes());
        out[10..18].copy_from_slice(&times.expires_at.to_le_bytes());
        out[18..26].copy_from_slice(&times.stale_until.to_le_bytes());
        // payload_len <= max_value_bytes <= u32::MAX, which validation enforces.
        out[26..30].copy_from_slice(&(payload_len as u32).to_le_bytes());
        Ok(out)
    }

    /// Compressed bytes, or `None` when compression fails or does not make the payload smaller.
    fn compress(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let settings = (self.zstd_level, self.compress_literals);
        COMPRESSOR.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot
                .as_ref()
                .is_none_or(|(made_for, _)| *made_for != settings)
            {
                *slot = Some((settings, self.compressor().ok()?));
            }
            let (_, compressor) = slot.as_mut()?;
            let compressed = compressor.compress(payload).ok()?;
            (compressed.len() < payload.len()).then_some(compressed)
        })
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

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Decoded<T>, DecodeError> {
        let (times, payload_len, header_len) = header(bytes)?;
        let flags = bytes[1];
        if flags & !FLAG_ZSTD != 0 {
            return Err(DecodeError::Flags(flags));
        }
        if payload_len > self.max_value_bytes {
            return Err(DecodeError::TooLarge(payload_len));
        }
        let payload = &bytes[header_len..];
        let value = if flags & FLAG_ZSTD == 0 {
            if payload.len() != payload_len {
                return Err(DecodeError::Length);
            }
            rmp_serde::from_slice(payload).map_err(DecodeError::Payload)?
        } else {
            with_decompressed(payload, payload_len, |raw| {
                rmp_serde::from_slice(raw).map_err(DecodeError::Payload)
            })??
        };
        Ok(Decoded { value, times })
    }
}

/// The header's lifetime, payload length and own length, for either format version.
fn header(bytes: &[u8]) -> Result<(UnixTimes, usize, usize), DecodeError> {
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize)
    };
    let truncated = DecodeError::Truncated(bytes.len());
    match bytes.first() {
        Some(&VERSION) if bytes.len() >= HEADER_LEN => {
            let times = UnixTimes {
                fresh_until: u64_at(2).ok_or(truncated)?,
                expires_at: u64_at(10).ok_or(DecodeError::Truncated(bytes.len()))?,
                stale_until: u64_at(18).ok_or(DecodeError::Truncated(bytes.len()))?,
            };
            let len = u32_at(26).ok_or(DecodeError::Truncated(bytes.len()))?;
            Ok((times, len, HEADER_LEN))
        }
        Some(1) if bytes.len() >= V1_HEADER_LEN => {
            let times = UnixTimes::single(u64_at(2).ok_or(truncated)?);
            let len = u32_at(10).ok_or(DecodeError::Truncated(bytes.len()))?;
            Ok((times, len, V1_HEADER_LEN))
        }
        Some(&VERSION | 1) | None => Err(truncated),
        Some(&other) => Err(DecodeError::Version(other)),
    }
}

/// Runs `f` over the decompressed payload, reusing this thread's zstd context and buffer.
fn with_decompressed<R>(
    payload: &[u8],
    payload_len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, DecodeError> {
    let fresh = || -> Result<_, DecodeError> {
        Ok((
            zstd::bulk::Decompressor::new().map_err(DecodeError::Zstd)?,
            Vec::new(),
        ))
    };
    DECOMPRESSOR.with(|cell| {
        // A re-entrant call (a Deserialize impl that reads the cache) gets its own context.
        let mut own = None;
        let mut borrowed = cell.try_borrow_mut().ok();
        let slot = match borrowed.as_deref_mut() {
            Some(slot) => slot,
            None => &mut own,
        };
        if slot.is_none() {
            *slot = Some(fresh()?);
        }
        let Some((decompressor, buffer)) = slot.as_mut() else {
            return Err(DecodeError::Length);
        };
        buffer.clear();
        buffer.reserve(payload_len);
        let written = decompressor
            .decompress_to_buffer(payload, buffer)
            .map_err(DecodeError::Zstd)?;
        if written != payload_len {
            return Err(DecodeError::Length);
        }
        let result = f(buffer);
        // Do not keep a huge buffer alive on this thread after one large value.
        if buffer.capacity() > 1 << 20 {
            *buffer = Vec::new();
        }
        Ok(result)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn codec() -> Codec {
        Codec {
            compression_threshold: 64,
            zstd_level: 3,
            compress_literals: false,
            max_value_bytes: 1 << 20,
        }
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
        let bytes = codec().encode(&ad(10), times).expect("encodes");
        assert_eq!(bytes[1], 0, "below the threshold: not compressed");
        let decoded = codec().decode::<Ad>(&bytes).expect("decodes");
        assert_eq!(decoded.value, ad(10));
        assert_eq!(decoded.times, times);
    }

    #[test]
    fn large_values_round_trip_compressed_and_smaller() {
        let value = ad(4000);
        let bytes = codec()
            .encode(&value, UnixTimes::single(1))
            .expect("encodes");
        assert_eq!(bytes[1], FLAG_ZSTD);
        assert!(
            bytes.len() < 1000,
            "repetitive text compresses: {}",
            bytes.len()
        );
        assert_eq!(codec().decode::<Ad>(&bytes).expect("decodes").value, value);
    }

    #[test]
    fn compressing_literals_is_smaller_and_still_round_trips() {
        let value = ad(4000);
        let plain = codec()
            .encode(&value, UnixTimes::single(1))
            .expect("encodes");
        let huffman = Codec {
            compress_literals: true,
            ..codec()
        };
        let smaller = huffman
            .encode(&value, UnixTimes::single(1))
            .expect("encodes");
        assert!(
            smaller.len() <= plain.len(),
            "{} > {}",
            smaller.len(),
            plain.len()
        );
        // Either encoding decodes with any settings: the frame says what it holds.
        assert_eq!(
            codec().decode::<Ad>(&smaller).expect("decodes").value,
            value
        );
        assert_eq!(huffman.decode::<Ad>(&plain).expect("decodes").value, value);
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
            .encode(&value, UnixTimes::single(1))
            .expect("encodes");
        assert_eq!(
            codec()
                .decode::<Vec<Either>>(&bytes)
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
            .encode(&"x".repeat(200), UnixTimes::single(1))
            .expect_err("too large");
        assert!(err.to_string().contains("max_value_bytes = 100"), "{err}");
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let good = codec()
            .encode(&ad(4000), UnixTimes::single(1))
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
            assert!(codec().decode::<Ad>(&case).is_err(), "{case:?}");
        }
        // Valid bytes of another type are a decode error too.
        assert!(codec().decode::<Vec<u64>>(&good).is_err());
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
        let decoded = codec().decode::<u32>(&v1).expect("decodes");
        assert_eq!(decoded.value, 5);
        assert_eq!(decoded.times, UnixTimes::single(77));
    }
}
