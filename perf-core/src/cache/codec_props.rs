//! The value decoder against bytes it did not write (issue 20, fuzzing on stable): whatever
//! L2 or the remote tier hands back, decoding never panics, the cache turns what does not
//! decode into a counted miss, and a codec with a key ring opens only what it sealed.
//!
//! Case counts are kept low enough for the workspace's test run; `PROPTEST_CASES=5000` raises
//! every property here to that many cases.
//!
//! The largest single allocation a decode makes is measured by this test binary's global
//! allocator ([`Largest`]): the system's, which notes request sizes on threads that ask it to.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use proptest::prelude::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::{EncryptionKey, ValueProtection};

use super::{
    MultiLevelCache, RemoteTier, Tier,
    codec::{Codec, DecodeError, Decoded, Seal, UnixTimes},
    protect::KeyRing,
    tests::{MemoryRemote, TestError, config},
};

/// The one call into the decoder, so that a change of its signature is a change here alone.
fn decode<T: DeserializeOwned>(codec: &Codec, bytes: &[u8]) -> Result<Decoded<T>, DecodeError> {
    codec.decode(bytes, "k")
}

/// `value` encoded by [`codec`]: the one call into the encoder.
fn encode<T: Serialize + ?Sized>(value: &T, times: UnixTimes) -> Vec<u8> {
    codec()
        .encode(value, times, "k", Seal::Default)
        .expect("encodes")
}

/// `cases` cases, unless `PROPTEST_CASES` says how many.
fn cases(cases: u32) -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    }
}

const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Array nesting deep enough to pass the decoder's limit (128 levels); a `serde_json::Value`
/// would overflow a 2 MiB stack in a debug build from 599 levels on, were they decoded.
const SAFE_DEPTH: usize = 400;

fn codec() -> Codec {
    Codec::plain(64, 3, false, MAX_VALUE_BYTES)
}

/// Some instant in 2026, in Unix milliseconds.
const SOME_TIME: u64 = 1_780_000_000_000;

fn times() -> UnixTimes {
    UnixTimes {
        fresh_until: SOME_TIME,
        expires_at: SOME_TIME + 1,
        stale_until: SOME_TIME + 2,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ad {
    id: u64,
    title: String,
    tags: Vec<String>,
    bid: f64,
    extra: BTreeMap<String, String>,
}

fn ad() -> impl Strategy<Value = Ad> {
    (
        any::<u64>(),
        ".{0,300}",
        proptest::collection::vec("[a-z]{0,8}", 0..4),
        -1e6..1e6f64,
        proptest::collection::btree_map("[a-z]{1,4}", ".{0,8}", 0..3),
    )
        .prop_map(|(id, title, tags, bid, extra)| Ad {
            id,
            title,
            tags,
            bid,
            extra,
        })
}

/// A header of either version around `payload`, stating `claimed` as the payload's length.
fn envelope(version: u8, flags: u8, claimed: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![version, flags];
    bytes.extend_from_slice(&times().fresh_until.to_le_bytes());
    if version == 2 {
        bytes.extend_from_slice(&times().expires_at.to_le_bytes());
        bytes.extend_from_slice(&times().stale_until.to_le_bytes());
    }
    bytes.extend_from_slice(&claimed.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Bytes a decoder may meet: any bytes at all, and envelopes (plain or zstd, honest about the
/// length or not) around arbitrary payloads, so that the cases reach past the header.
fn stored_bytes() -> impl Strategy<Value = Vec<u8>> {
    let payload = || proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..100),
        (1u8..=2, payload()).prop_map(|(version, payload)| {
            envelope(version, 0, payload.len() as u32, &payload)
        }),
        (1u8..=2, any::<u8>(), any::<u32>(), payload()).prop_map(
            |(version, flags, claimed, payload)| envelope(version, flags, claimed, &payload)
        ),
        (1u8..=2, payload()).prop_map(|(version, payload)| {
            let compressed = zstd::bulk::compress(&payload, 1).expect("compresses");
            envelope(version, 1, payload.len() as u32, &compressed)
        }),
        // MessagePack nested deeper than most real values, and past the decoder's limit.
        (1usize..SAFE_DEPTH, prop_oneof![Just(0x91u8), Just(0x81)]).prop_map(|(depth, opener)| {
            let mut payload = vec![opener; depth];
            payload.push(0);
            envelope(2, 0, payload.len() as u32, &payload)
        }),
    ]
}

/// Decodes `bytes` as `T`: no panic, and a value or an error that says something. A value
/// that decodes is one the encoder writes back and decodes to itself.
fn decodes_or_refuses<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match decode::<T>(&codec(), bytes) {
        Ok(decoded) => {
            prop_assert!(matches!(bytes.first(), Some(1..=3)));
            let again = encode(&decoded.value, decoded.times);
            let twice = decode::<T>(&codec(), &again).expect("its encoding decodes");
            prop_assert_eq!(twice.value, decoded.value);
            prop_assert_eq!(twice.times, decoded.times);
        }
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// (a) Any bytes, read as any of several types, decode or are refused: never a panic.
    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in stored_bytes()) {
        decodes_or_refuses::<u64>(&bytes)?;
        decodes_or_refuses::<String>(&bytes)?;
        decodes_or_refuses::<Vec<u8>>(&bytes)?;
        decodes_or_refuses::<serde_json::Value>(&bytes)?;
        // A struct with a float: NaN would fail the round trip's comparison, so no panic and
        // nothing more.
        let _ = decode::<Ad>(&codec(), &bytes);
    }

    /// (b) One byte of a good (unsealed) encoding flipped. The header is checked: a changed
    /// version (other than to 1 or 2, which read the bytes as an older header), flags, length
    /// or key id length is refused, and changed times still decode the same value. An unsealed
    /// payload is not authenticated (no checksum, nor one in the zstd frame): a flipped
    /// payload byte may decode to another value of the type, so there it is only no panic.
    /// Sealed values refuse every flipped byte (`codec.rs`'s tests).
    #[test]
    fn a_flipped_byte_is_refused_or_decodes_where_it_can(
        value in ad(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let good = encode(&value, times());
        let at = at.index(good.len());
        let mut bytes = good.clone();
        bytes[at] ^= mask;
        let result = decode::<Ad>(&codec(), &bytes);
        match at {
            // Read as an older version's header: anything but a panic.
            0 if matches!(bytes[0], 1 | 2) => {}
            // Version, flags, payload length, key id length.
            0 | 1 | 26..30 | 38 => prop_assert!(result.is_err(), "byte {} flipped", at),
            2..26 => {
                let decoded = result.expect("the times are not checked");
                prop_assert_eq!(decoded.value, value);
                prop_assert_ne!(decoded.times, times());
            }
            30..38 => {
                let decoded = result.expect("the write time is not checked");
                prop_assert_eq!(decoded.value, value);
            }
            _ => {}
        }
    }

    /// (b) A good encoding cut short is refused.
    #[test]
    fn a_truncated_encoding_is_refused(value in ad(), keep in any::<prop::sample::Index>()) {
        let good = encode(&value, times());
        let keep = keep.index(good.len());
        prop_assert!(decode::<Ad>(&codec(), &good[..keep]).is_err(), "{} of {} bytes", keep, good.len());
    }

    /// (b) A good encoding with junk after it is refused, or (a zstd frame followed by what
    /// reads as an empty frame) decodes to exactly the value written.
    #[test]
    fn an_extended_encoding_is_refused_or_exact(
        value in ad(),
        junk in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut bytes = encode(&value, times());
        bytes.extend_from_slice(&junk);
        if let Ok(decoded) = decode::<Ad>(&codec(), &bytes) {
            prop_assert_eq!(decoded.value, value);
        }
    }

    /// (c) A header claiming more than `max_value_bytes` is refused before anything is
    /// allocated for it.
    #[test]
    fn a_claimed_length_over_the_limit_is_refused_unallocated(
        version in 1u8..=2,
        flags in 0u8..=1,
        claimed in (MAX_VALUE_BYTES as u32 + 1)..=u32::MAX,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = envelope(version, flags, claimed, &payload);
        let (result, largest) = largest_allocation(|| decode::<Vec<u8>>(&codec(), &bytes).map(|_| ()));
        prop_assert!(matches!(result, Err(DecodeError::TooLarge(n)) if n == claimed as usize), "{:?}", result);
        prop_assert!(largest < 4096, "{} bytes allocated", largest);
    }

    /// (c) A zstd frame that inflates to 32 MiB, under a header claiming at most
    /// `max_value_bytes`, is refused without inflating it. The one allocation is this
    /// thread's reused buffer growing to the claimed length.
    #[test]
    fn a_decompression_bomb_is_refused_uninflated(
        version in 1u8..=2,
        claimed in 0..=MAX_VALUE_BYTES as u32,
    ) {
        let bytes = envelope(version, 1, claimed, bomb());
        // This thread's zstd context, made once per thread, is not the bomb's doing.
        let warm = encode(&"x".repeat(1000), times());
        decode::<String>(&codec(), &warm).expect("decodes");
        let (result, largest) = largest_allocation(|| decode::<Vec<u8>>(&codec(), &bytes).map(|_| ()));
        prop_assert!(result.is_err());
        prop_assert!(largest <= MAX_VALUE_BYTES, "{} bytes allocated", largest);
    }
}

/// rmp-serde refuses MessagePack nested deeper than 1024 levels, but a recursive type
/// (`serde_json::Value` here, or a user's tree) overflows a 2 MiB stack (a tokio worker's, a
/// test's) well before that in a debug build: from 599 levels of arrays, about 600 bytes
/// of a remote value. A stack overflow aborts the process; it is not a panic the cache could
/// turn into a miss. The decoder's own limit (128 levels) refuses such values first.
#[test]
fn nesting_past_the_decoders_limit_is_refused_within_a_threads_stack() {
    let nested = |depth: usize| {
        let mut payload = vec![0x91u8; depth];
        payload.push(0);
        envelope(2, 0, payload.len() as u32, &payload)
    };
    let (shallow, deep) = (nested(100), nested(1023));
    let results = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            (
                decode::<serde_json::Value>(&codec(), &shallow).is_ok(),
                decode::<serde_json::Value>(&codec(), &deep).map(|_| ()),
            )
        })
        .expect("thread")
        .join()
        .expect("no panic");
    assert!(results.0, "100 levels decode");
    assert!(
        matches!(results.1, Err(DecodeError::Payload(_))),
        "1023 levels are refused: {:?}",
        results.1
    );
}

/// 32 MiB of zeros, zstd-compressed (about a kilobyte).
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| zstd::bulk::compress(&vec![0u8; 32 << 20], 1).expect("compresses"))
}

// ----- sealed values -----

/// A codec with a key ring (`cache_encryption_keys`), encrypting or only authenticating.
fn sealing(protection: ValueProtection) -> Codec {
    let keys = [
        EncryptionKey::new("new", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        EncryptionKey::new("old", "HxobHBscGxwbHBscGxwbHBscGxwbHBscGxwbHBscGxw="),
    ];
    Codec {
        ring: KeyRing::new(&keys, protection)
            .expect("valid keys")
            .map(Arc::new),
        ..codec()
    }
}

fn protection() -> impl Strategy<Value = ValueProtection> {
    prop_oneof![
        Just(ValueProtection::Encrypt),
        Just(ValueProtection::Authenticate)
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any bytes, and sealed-looking envelopes around arbitrary bytes, given to a codec with a
    /// key ring: refused (nothing unsealed gets through), never a panic.
    #[test]
    fn a_key_ring_refuses_whatever_it_did_not_seal(
        protection in protection(),
        bytes in prop_oneof![
            stored_bytes(),
            (1u8..=7, 0u8..=3, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
                |(flags, id_len, rest)| {
                    let mut bytes = vec![3, flags];
                    bytes.extend_from_slice(&[0; 36]);
                    bytes.push(id_len);
                    bytes.extend_from_slice(&b"new"[..usize::from(id_len)]);
                    bytes.extend_from_slice(&rest);
                    bytes
                }
            ),
        ],
    ) {
        let codec = sealing(protection);
        prop_assert!(decode::<serde_json::Value>(&codec, &bytes).is_err());
        prop_assert!(decode::<Ad>(&codec, &bytes).is_err());
    }

    /// A sealed value with any byte changed, cut short or extended does not open; as it was,
    /// it opens to exactly the value sealed.
    #[test]
    fn a_sealed_value_opens_only_as_it_was_written(
        protection in protection(),
        value in ad(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        junk in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let codec = sealing(protection);
        let good = codec
            .encode(&value, times(), "k", Seal::Default)
            .expect("encodes");
        prop_assert_eq!(&decode::<Ad>(&codec, &good).expect("opens").value, &value);
        let mut flipped = good.clone();
        flipped[at.index(good.len())] ^= mask;
        prop_assert!(decode::<Ad>(&codec, &flipped).is_err());
        prop_assert!(decode::<Ad>(&codec, &good[..at.index(good.len())]).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&junk);
        prop_assert!(decode::<Ad>(&codec, &longer).is_err());
    }
}

// ----- end to end: foreign bytes in the remote tier -----

/// What a reader of `u64` values makes of `bytes` found in the remote tier: a hit on exactly
/// the value they decode to, or a counted miss (and the loader runs).
fn remote_bytes_are_a_hit_or_a_counted_miss(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let remote = Arc::new(MemoryRemote::default());
        let cache = MultiLevelCache::builder(&config())
            .remote_tier(Arc::clone(&remote) as Arc<dyn RemoteTier>)
            .build()
            .expect("valid");
        remote.put("foreign", bytes.clone());
        let expected = decode::<u64>(&cache.engine.codec, &bytes);
        let got = cache.get::<u64>("foreign", Tier::Redis).await;
        let stats = cache.stats().remote.expect("a remote tier");
        match expected {
            Ok(decoded) => {
                // Arbitrary times may be past: then a miss. Never another value.
                let got = got.expect("no error");
                if let Some(value) = got {
                    prop_assert_eq!(*value, decoded.value);
                    prop_assert_eq!(stats.hits, 1);
                } else {
                    prop_assert_eq!(stats.misses, 1);
                }
            }
            Err(error) => {
                prop_assert_eq!(got.expect("a miss, not an error"), None, "{}", error);
                prop_assert_eq!(stats.misses, 1);
                prop_assert_eq!(stats.decode_errors + stats.type_mismatches, 1);
                if !matches!(
                    error,
                    DecodeError::Payload(_) | DecodeError::UnknownKey | DecodeError::NoKeyRing
                ) {
                    // Not our envelope: deleted, so that the next reader loads. (A sealed one
                    // is left for the instances holding its key.)
                    prop_assert!(remote.map.lock().get("foreign").is_none());
                }
                let loaded = cache
                    .get_or_load("foreign", Tier::Redis, None, || async {
                        Ok::<_, TestError>(7u64)
                    })
                    .await;
                prop_assert_eq!(loaded, Ok(Arc::new(7)));
                prop_assert_eq!(cache.stats().loads.loader_runs, 1);
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(cases(64))]

    /// (d) Foreign bytes under a key, read through the public API: a miss that the remote
    /// tier's statistics count (as a decode error or a type mismatch), then a load.
    #[test]
    fn foreign_remote_bytes_are_a_counted_miss(bytes in stored_bytes()) {
        remote_bytes_are_a_hit_or_a_counted_miss(bytes)?;
    }

    /// (d) A good envelope around another type's value: a counted type mismatch.
    #[test]
    fn another_types_value_is_a_counted_miss(text in ".{0,100}") {
        let bytes = encode(&text, times());
        remote_bytes_are_a_hit_or_a_counted_miss(bytes)?;
    }
}

// ----- measuring allocations -----

/// The system allocator, noting the largest request made on a thread while it measures.
struct Largest;

thread_local! {
    /// The largest request so far on this thread, while measuring.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    // `try_with`: allocations during the thread's teardown are not measured.
    let _ = LARGEST.try_with(|largest| {
        if let Some(seen) = largest.get() {
            largest.set(Some(seen.max(size)));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; noting a size neither
// allocates nor touches the memory.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// `f`'s result and the largest allocation it asked for on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|largest| largest.set(Some(0)));
    let result = f();
    let largest = LARGEST.with(|largest| largest.take()).unwrap_or(0);
    (result, largest)
}
