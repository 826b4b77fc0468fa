//! Sealing shared values: the key ring of `cache_encryption_keys`, AES-256-GCM and
//! HMAC-SHA256 (ring), and what a security invalidation revokes.
//!
//! A seal binds a value to where it was written: the namespace of the remote tier, the cache
//! key and the envelope's header (lifetimes, write time, key id) are all authenticated, so a
//! value copied to another key or namespace, or given a longer life, does not open.
//!
//! Each configured key is expanded with HKDF into one key for AES-256-GCM and another for
//! HMAC, so that no key serves two algorithms. Nonces are a random 96-bit starting point
//! drawn when the cache is built, counted up by one per value: no two values of a process
//! share a nonce, and two processes would need to draw starting points within the number of
//! values they write of each other, which 96 random bits make negligible (random nonces alone
//! would wear a key out after about 2^32 values).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use ring::{aead, hkdf, hmac, rand::SecureRandom};
use subtle::ConstantTimeEq;

use crate::config::{EncryptionKey, ValueProtection};

pub(crate) const NONCE_LEN: usize = aead::NONCE_LEN;
pub(crate) const AEAD_TAG_LEN: usize = 16;
pub(crate) const MAC_TAG_LEN: usize = 32;
/// The longest key id (validated with the configuration).
pub(crate) const MAX_KEY_ID: usize = 32;

/// One key of the ring, expanded for each algorithm.
pub(crate) struct RingKey {
    pub(crate) id: Box<str>,
    aead: aead::LessSafeKey,
    mac: hmac::Key,
}

/// The configured keys (the first seals), and what a seal must answer to.
pub(crate) struct KeyRing {
    keys: Vec<RingKey>,
    pub(crate) protection: ValueProtection,
    nonces: Nonces,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| &*key.id).collect();
        f.debug_struct("KeyRing")
            .field("ids", &ids)
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

/// Why a ring could not be built (the configuration's validation reports bad keys first).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RingError(String);

impl KeyRing {
    /// The ring of `keys`, or `None` when there are none.
    pub(crate) fn new(
        keys: &[EncryptionKey],
        protection: ValueProtection,
    ) -> Result<Option<Self>, RingError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let keys = keys
            .iter()
            .map(|key| {
                let bytes = key.bytes().map_err(RingError)?;
                Ok(RingKey::expand(&key.id, &bytes))
            })
            .collect::<Result<Vec<_>, RingError>>()?;
        Ok(Some(Self {
            keys,
            protection,
            nonces: Nonces::random().ok_or_else(|| RingError("no system randomness".into()))?,
        }))
    }

    /// The key that seals.
    pub(crate) fn current(&self) -> &RingKey {
        &self.keys[0]
    }

    /// The key named `id`, and whether it is the current one.
    pub(crate) fn find(&self, id: &[u8]) -> Option<(&RingKey, bool)> {
        let at = self.keys.iter().position(|key| key.id.as_bytes() == id)?;
        Some((&self.keys[at], at == 0))
    }

    pub(crate) fn next_nonce(&self) -> [u8; NONCE_LEN] {
        self.nonces.next()
    }
}

impl RingKey {
    fn expand(id: &str, secret: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"perf cache value keys").extract(secret);
        // Both lengths are the algorithms' own, which `expand` cannot refuse.
        let aead_key: aead::UnboundKey = prk
            .expand(&[b"aes-256-gcm"], &aead::AES_256_GCM)
            .map(Into::into)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 expands to 32 bytes"));
        let mac_key: hmac::Key = prk
            .expand(&[b"hmac-sha256"], hmac::HMAC_SHA256)
            .map(Into::into)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 expands to 32 bytes"));
        Self {
            id: id.into(),
            aead: aead::LessSafeKey::new(aead_key),
            mac: mac_key,
        }
    }

    /// Encrypts `in_out` in place and returns the tag; `aad` is authenticated with it.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; AEAD_TAG_LEN] {
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        // Sealing fails only past the algorithm's 64 GiB limit per value, above
        // `max_value_bytes`'s 4 GiB.
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), in_out)
            .unwrap_or_else(|_| unreachable!("values are at most 4 GiB"));
        let mut out = [0; AEAD_TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `in_out` (ciphertext, then tag) in place; the plaintext, or `None` when the
    /// tag does not match.
    pub(crate) fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        self.aead
            .open_in_place(nonce, aead::Aad::from(aad), in_out)
            .ok()
    }

    /// The HMAC of `parts`, in order.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_TAG_LEN] {
        let mut context = hmac::Context::with_key(&self.mac);
        for part in parts {
            context.update(part);
        }
        let mut out = [0; MAC_TAG_LEN];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Whether `tag` is the HMAC of `parts`, compared in constant time.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        bool::from(self.mac(parts).as_slice().ct_eq(tag))
    }
}

/// Unique nonces: a random 96-bit start, counted up (see the module's documentation).
struct Nonces {
    prefix: [u8; 4],
    counter: AtomicU64,
}

impl Nonces {
    fn random() -> Option<Self> {
        let mut start = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new().fill(&mut start).ok()?;
        let (prefix, counter) = start.split_at(4);
        Some(Self {
            prefix: prefix.try_into().ok()?,
            counter: AtomicU64::new(u64::from_le_bytes(counter.try_into().ok()?)),
        })
    }

    fn next(&self) -> [u8; NONCE_LEN] {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&count.to_le_bytes());
        nonce
    }
}

/// What a security invalidation revoked on this instance: values written before an instant,
/// or sealed under a key id, are misses from then on.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    /// Unix milliseconds; values written before are refused (0: none).
    written_before: AtomicU64,
    key_ids: RwLock<Vec<Box<str>>>,
    /// Whether `key_ids` holds any, so that reads skip its lock.
    any_key_ids: std::sync::atomic::AtomicBool,
}

impl Revoked {
    pub(crate) fn revoke_before(&self, unix_ms: u64) {
        self.written_before.fetch_max(unix_ms, Ordering::Relaxed);
    }

    pub(crate) fn revoke_key_id(&self, id: &str) {
        let mut ids = self.key_ids.write();
        if !ids.iter().any(|known| &**known == id) {
            ids.push(id.into());
        }
        self.any_key_ids.store(true, Ordering::Release);
    }

    /// Whether a value written at `written_at` under `key_id` is revoked.
    pub(crate) fn refuses(&self, written_at: u64, key_id: &[u8]) -> bool {
        if written_at < self.written_before.load(Ordering::Relaxed) {
            return true;
        }
        !key_id.is_empty()
            && self.any_key_ids.load(Ordering::Acquire)
            && self.key_ids.read().iter().any(|id| id.as_bytes() == key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(
            &[
                EncryptionKey::new("new", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
                EncryptionKey::new("old", "HxobHBscGxwbHBscGxwbHBscGxwbHBscGxwbHBscGxw="),
            ],
            ValueProtection::Encrypt,
        )
        .expect("valid keys")
        .expect("a ring")
    }

    #[test]
    fn seals_open_only_with_their_key_and_associated_data() {
        let ring = ring();
        let (new, current) = ring.find(b"new").expect("known");
        assert!(current);
        let (old, current) = ring.find(b"old").expect("known");
        assert!(!current);
        assert!(ring.find(b"gone").is_none());

        let nonce = ring.next_nonce();
        let mut sealed = b"secret ad".to_vec();
        let tag = new.seal(nonce, b"ns/key", &mut sealed);
        assert_ne!(sealed, b"secret ad");
        sealed.extend_from_slice(&tag);

        let open = |key: &RingKey, aad: &[u8], nonce| {
            let mut copy = sealed.clone();
            key.open(nonce, aad, &mut copy).map(|plain| plain.to_vec())
        };
        assert_eq!(
            open(new, b"ns/key", nonce).as_deref(),
            Some(&b"secret ad"[..])
        );
        assert_eq!(open(old, b"ns/key", nonce), None, "another key");
        assert_eq!(open(new, b"ns/other", nonce), None, "moved");
        assert_eq!(open(new, b"ns/key", ring.next_nonce()), None, "nonce");
    }

    #[test]
    fn nonces_never_repeat_within_a_ring() {
        let ring = ring();
        let first = ring.next_nonce();
        let second = ring.next_nonce();
        assert_ne!(first, second);
        assert_eq!(first[..4], second[..4], "one random prefix per ring");
    }

    #[test]
    fn macs_verify_in_parts() {
        let ring = ring();
        let key = ring.current();
        let tag = key.mac(&[b"ab", b"cd"]);
        assert!(key.verify(&[b"abcd"], &tag));
        assert!(!key.verify(&[b"abce"], &tag));
        assert!(!key.verify(&[b"abcd"], &tag[..31]), "short tag");
        assert!(!ring.find(b"old").expect("known").0.verify(&[b"abcd"], &tag));
    }

    #[test]
    fn revocations_by_time_and_key_id() {
        let revoked = Revoked::default();
        assert!(!revoked.refuses(0, b""));
        revoked.revoke_before(100);
        revoked.revoke_before(50);
        assert!(revoked.refuses(99, b""));
        assert!(!revoked.refuses(100, b"old"));
        revoked.revoke_key_id("old");
        assert!(revoked.refuses(100, b"old"));
        assert!(!revoked.refuses(100, b"new"));
    }
}
