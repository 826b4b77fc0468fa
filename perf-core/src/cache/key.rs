//! Cache keys for function results: stable across processes and builds, bounded in length,
//! and readable by their prefix.

use std::cell::Cell;

use serde::Serialize;

use crate::spare;

/// Encoded arguments up to this length appear in the key as hex; longer ones as a hash.
const INLINE_ARGUMENTS: usize = 32;

/// The key under which `#[cache_result]` stores a call: `path`, then the arguments' stable
/// encoding (MessagePack, as hex when short, else its 128-bit xxh3 hash). Never Rust's
/// `Hash`, which may differ between builds. Use it to reach a cached call from elsewhere,
/// for example to delete it:
///
/// ```
/// let key = perf_core::cache::function_key("ads::fetch_ad", &(42u64,));
/// assert!(key.starts_with("ads::fetch_ad:"));
/// assert_eq!(key, perf_core::cache::function_key("ads::fetch_ad", &(42u64,)));
/// ```
///
/// Arguments whose serialization is not deterministic (a `HashMap`'s iteration order) give
/// keys that differ between calls: skip them, or use ordered maps. Arguments whose
/// serialization fails (a `PathBuf` that is not UTF-8, say) give `path:unencodable`, which
/// `#[cache_result]` never stores under: it calls such a function straight through.
pub fn function_key<A: Serialize + ?Sized>(path: &str, arguments: &A) -> String {
    let mut key = String::with_capacity(path.len() + 2 + 2 * INLINE_ARGUMENTS);
    let _encoded = write_function_key(&mut key, path, arguments);
    key
}

/// [`function_key`] appended to `out`, reusing this thread's encoding buffer: no allocation
/// once `out` has room. False when the arguments did not serialize: the key then ends in
/// `unencodable`, and `#[cache_result]` runs such a call without the cache.
pub fn write_function_key<A: Serialize + ?Sized>(
    out: &mut String,
    path: &str,
    arguments: &A,
) -> bool {
    thread_local! {
        static ENCODED: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
    }
    let mut encoded = spare::take(&ENCODED).unwrap_or_default();
    encoded.clear();
    out.push_str(path);
    out.push(':');
    let encodable = rmp_serde::encode::write(&mut encoded, arguments).is_ok();
    if !encodable {
        // Visible in the key; no call with these arguments should use it.
        out.push_str("unencodable");
    } else if encoded.len() <= INLINE_ARGUMENTS {
        push_hex(out, &encoded);
    } else {
        out.push('#');
        push_hex(out, &xxhash_rust::xxh3::xxh3_128(&encoded).to_be_bytes());
    }
    spare::keep(&ENCODED, encoded);
    encodable
}

/// A random 64-bit id, unlikely ever to repeat across processes and restarts (not for
/// secrets): an instance's id on the Redis backplane, a table's generation in query keys.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState has fresh keys (seeded from the OS once per thread, then stepped).
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Builds a key in this thread's reused buffer and reads with it.
#[doc(hidden)]
#[inline]
pub fn with_key<R>(write: impl FnOnce(&mut String), read: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static KEY: Cell<Option<String>> = const { Cell::new(None) };
    }
    let mut key = spare::take(&KEY).unwrap_or_else(|| String::with_capacity(128));
    key.clear();
    write(&mut key);
    let result = read(&key);
    spare::keep(&KEY, key);
    result
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_distinct_and_bounded() {
        let a = function_key("m::f", &(1u32, "x"));
        assert_eq!(
            a, "m::f:9201a178",
            "a fixed encoding, the same in every process"
        );
        assert_ne!(a, function_key("m::f", &(2u32, "x")));
        assert_ne!(a, function_key("m::g", &(1u32, "x")));
        let long = function_key("m::f", &("y".repeat(10_000),));
        assert!(long.starts_with("m::f:#"));
        assert_eq!(long.len(), "m::f:#".len() + 32, "hashed: bounded");
        assert_eq!(function_key("m::f", &()), "m::f:c0");
    }
}
