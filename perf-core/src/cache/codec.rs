//! The one value encoding shared by L2 and the remote tier.
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      flags: bit 0 = payload is zstd-compressed
//! bytes 2..10 expiry, Unix milliseconds, little endian (lets a remote hit keep its remaining TTL)
//! bytes 10..14 payload length before compression, little endian
//! bytes 14..  payload: MessagePack (rmp-serde), zstd-compressed when flagged
//! ```
//!
//! MessagePack rather than postcard because it is self-describing: `serde_json::Value`,
//! untagged enums and `#[serde(flatten)]` round-trip, where postcard would fail at run time.

use std::{
    cell::RefCell,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

pub(crate) const HEADER_LEN: usize = 14;
const VERSION: u8 = 1;
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

/// A decoded value and the expiry its header carries.
#[derive(Debug)]
pub(crate) struct Decoded<T> {
    pub(crate) value: T,
    pub(crate) expires_at_unix_ms: u64,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<((i32, bool), zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
}

pub(crate) fn unix_ms_after(ttl: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.saturating_add(ttl).as_millis()).unwrap_or(u64::MAX)
}

/// Time left until a Unix-millisecond expiry; `None` once it has passed.
pub(crate) fn remaining_until(expires_at_unix_ms: u64) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_millis(expires_at_unix_ms)
        .checked_sub(now)
        .filter(|left| !left.is_zero())
}

impl Codec {
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        expires_at_unix_ms: u64,
    ) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; HEADER_LEN];
        rmp_serde::encode::write(&mut out, value).map_err(Error::Encode)?;
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
        out[2..10].copy_from_slice(&expires_at_unix_ms.to_le_bytes());
        // payload_len <= max_value_bytes <= u32::MAX, which validation enforces.
        out[10..14].copy_from_slice(&(payload_len as u32).to_le_bytes());
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
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(DecodeError::Truncated(bytes.len()))?;
        if header[0] != VERSION {
            return Err(DecodeError::Version(header[0]));
        }
        let flags = header[1];
        if flags & !FLAG_ZSTD != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let expires_at_unix_ms = u64::from_le_bytes(header[2..10].try_into().unwrap_or_default());
        let payload_len =
            u32::from_le_bytes(header[10..14].try_into().unwrap_or_default()) as usize;
        if payload_len > self.max_value_bytes {
            return Err(DecodeError::TooLarge(payload_len));
        }
        let payload = &bytes[HEADER_LEN..];
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
        Ok(Decoded {
            value,
            expires_at_unix_ms,
        })
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
        let bytes = codec().encode(&ad(10), 42).expect("encodes");
        assert_eq!(bytes[1], 0, "below the threshold: not compressed");
        let decoded = codec().decode::<Ad>(&bytes).expect("decodes");
        assert_eq!(decoded.value, ad(10));
        assert_eq!(decoded.expires_at_unix_ms, 42);
    }

    #[test]
    fn large_values_round_trip_compressed_and_smaller() {
        let value = ad(4000);
        let bytes = codec().encode(&value, 1).expect("encodes");
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
        let plain = codec().encode(&value, 1).expect("encodes");
        let huffman = Codec {
            compress_literals: true,
            ..codec()
        };
        let smaller = huffman.encode(&value, 1).expect("encodes");
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
        let bytes = codec().encode(&value, 1).expect("encodes");
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
        let err = small.encode(&"x".repeat(200), 1).expect_err("too large");
        assert!(err.to_string().contains("max_value_bytes = 100"), "{err}");
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let good = codec().encode(&ad(4000), 1).expect("encodes");
        let mut cases: Vec<Vec<u8>> = vec![vec![], vec![1, 0, 0], good[..good.len() / 2].to_vec()];
        let mut wrong_version = good.clone();
        wrong_version[0] = 9;
        cases.push(wrong_version);
        let mut wrong_flags = good.clone();
        wrong_flags[1] = 0x80;
        cases.push(wrong_flags);
        let mut bomb = good.clone();
        bomb[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
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
        let left = remaining_until(unix_ms_after(Duration::from_secs(10))).expect("in the future");
        assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10));
        assert_eq!(remaining_until(1), None);
    }
}
