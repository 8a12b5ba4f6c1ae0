//! The key ring and sealed secrets (spec §5.18, architecture §4): AES-256-GCM with a random
//! 96-bit nonce and the row's id as associated data, the key id stored beside each ciphertext,
//! and the recovery-code index as HMAC-SHA-256 under an HKDF-derived subkey of a ring key.

use crate::Error;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;

const NONCE_LEN: usize = 12;
const INDEX_LABEL: &[u8] = b"latch recovery-code index";

/// A ciphertext and the id of the ring key that sealed it. Bytes are `nonce || ciphertext+tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed {{ key_id: {:?}, {} bytes }}",
            self.key_id,
            self.bytes.len()
        )
    }
}

struct RingKey {
    aead: Aes256Gcm,
    index_key: [u8; 32],
    /// The key itself, for deriving further purpose-bound subkeys.
    raw: [u8; 32],
}

/// The configured keys: one active (seals new values), all usable to open and to look up.
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a configured ring is unusable; the text names the offending key id.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("keys.ring is empty")]
    Empty,
    #[error("key id {0:?} must be lower-case [a-z0-9], 1 to 32 characters")]
    BadId(String),
    #[error("keys.ring.{0} must be the base64 of exactly 32 bytes")]
    BadKey(String),
    #[error("keys.active = {0:?} is not in keys.ring")]
    ActiveMissing(String),
}

impl KeyRing {
    /// Builds a ring from `(id, base64 key)` pairs and the active id.
    pub fn from_config<'a>(
        active: &str,
        ring: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, KeyRingError> {
        let mut keys = BTreeMap::new();
        for (id, b64) in ring {
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(KeyRingError::BadId(id.to_owned()));
            }
            let raw = data_encoding::BASE64
                .decode(b64.trim().as_bytes())
                .map_err(|_| KeyRingError::BadKey(id.to_owned()))?;
            let key: [u8; 32] = raw.try_into().map_err(|_| KeyRingError::BadKey(id.to_owned()))?;
            keys.insert(
                id.to_owned(),
                RingKey::new(&key).map_err(|_| KeyRingError::BadKey(id.to_owned()))?,
            );
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        if !keys.contains_key(active) {
            return Err(KeyRingError::ActiveMissing(active.to_owned()));
        }
        Ok(KeyRing {
            active: active.to_owned(),
            keys,
        })
    }

    /// A new random key, as the base64 text the configuration takes.
    pub fn generate_key() -> Result<String, Error> {
        Ok(data_encoding::BASE64.encode(&crate::random::bytes::<32>()?))
    }

    /// The id of the key that seals new values.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn active_key(&self) -> Result<&RingKey, Error> {
        self.keys
            .get(&self.active)
            .ok_or_else(|| Error::internal("active key missing from ring"))
    }

    /// Seals `plaintext` under the active key, bound to `aad` (the row id).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Sealed, Error> {
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>()?;
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .active_key()?
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ct.len());
        bytes.extend_from_slice(&nonce_bytes);
        bytes.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.active.clone(),
            bytes,
        })
    }

    /// Opens a sealed value. An unknown key id, a different row id or any tampering fails
    /// closed with an internal error (R-OTP-7), never a wrong plaintext.
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>, Error> {
        let key = self.keys.get(&sealed.key_id).ok_or_else(|| {
            Error::internal(format!(
                "value sealed under key {:?}, which is not in the ring",
                sealed.key_id
            ))
        })?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(Error::internal("sealed value is truncated"));
        }
        let (nonce_bytes, ct) = sealed.bytes.split_at(NONCE_LEN);
        let nonce_arr: [u8; NONCE_LEN] = nonce_bytes
            .try_into()
            .map_err(|_| Error::internal("sealed value is truncated"))?;
        key.aead
            .decrypt(
                &Nonce::from(nonce_arr),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::internal(format!(
                    "sealed value under key {:?} failed to open",
                    sealed.key_id
                ))
            })
    }

    /// A MAC of `data` under a subkey (HKDF label `label`) of the active key.
    pub fn mac(&self, label: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.active_key()?.mac(label, data)
    }

    /// Checks a (possibly truncated) MAC against every ring key, in constant time per key.
    pub fn verify_mac(&self, label: &str, data: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.keys.values().any(|k| {
            k.mac(label, data)
                .ok()
                .and_then(|m| m.get(..tag.len()).map(|p| bool::from(p.ct_eq(tag))))
                .unwrap_or(false)
                && !tag.is_empty()
        })
    }

    /// The lookup index of a normalised recovery code under the active key.
    pub fn index(&self, normalised: &str) -> Result<(String, Vec<u8>), Error> {
        Ok((self.active.clone(), self.active_key()?.index(normalised)))
    }

    /// The index under every ring key, for lookups while rows sealed under older keys remain.
    pub fn index_candidates(&self, normalised: &str) -> Vec<Vec<u8>> {
        self.keys.values().map(|k| k.index(normalised)).collect()
    }
}

impl RingKey {
    fn new(key: &[u8; 32]) -> Result<Self, Error> {
        let aead = Aes256Gcm::new_from_slice(key).map_err(|_| Error::internal("bad aes key length"))?;
        let mut index_key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, key)
            .expand(INDEX_LABEL, &mut index_key)
            .map_err(|_| Error::internal("hkdf expand failed"))?;
        Ok(RingKey {
            aead,
            index_key,
            raw: *key,
        })
    }

    fn mac(&self, label: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &self.raw)
            .expand(label.as_bytes(), &mut key)
            .map_err(|_| Error::internal("hkdf expand failed"))?;
        let mut mac =
            <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key).map_err(|_| Error::internal("hmac key"))?;
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn index(&self, normalised: &str) -> Vec<u8> {
        // HMAC accepts keys of any length; 32 bytes can never be rejected.
        match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.index_key) {
            Ok(mut mac) => {
                mac.update(normalised.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str, ids: &[&str]) -> (KeyRing, Vec<(String, String)>) {
        let pairs: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.to_string(), KeyRing::generate_key().unwrap()))
            .collect();
        let r = KeyRing::from_config(active, pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap();
        (r, pairs)
    }

    #[test]
    fn seal_and_open_round_trip_bound_to_the_row() {
        let (r, _) = ring("k1", &["k1"]);
        let s = r.seal(b"JBSWY3DPEHPK3PXP", "totp-test-1").unwrap();
        assert_eq!(s.key_id, "k1");
        assert!(!s.bytes.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(r.open(&s, "totp-test-1").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(r.open(&s, "totp-test-2").is_err(), "moved to another row");
        let mut tampered = s.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert!(r.open(&tampered, "totp-test-1").is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(r.seal(b"x", "a").unwrap().bytes, r.seal(b"x", "a").unwrap().bytes);
    }

    #[test]
    fn a_wrong_or_missing_key_fails_closed() {
        let (a, _) = ring("k1", &["k1"]);
        let (b, _) = ring("k1", &["k1"]);
        let s = a.seal(b"secret", "row").unwrap();
        assert!(b.open(&s, "row").is_err());
        let (c, _) = ring("k2", &["k2"]);
        assert!(c.open(&s, "row").is_err());
    }

    #[test]
    fn old_keys_still_open_and_index_after_a_new_key_becomes_active() {
        let (old, pairs) = ring("k1", &["k1"]);
        let sealed = old.seal(b"v", "row").unwrap();
        let (_, old_index) = old.index("ckss2skxebow").unwrap();
        let mut both = pairs.clone();
        both.push(("k2".into(), KeyRing::generate_key().unwrap()));
        let new = KeyRing::from_config("k2", both.iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap();
        assert_eq!(new.open(&sealed, "row").unwrap(), b"v");
        assert_eq!(new.seal(b"v", "row").unwrap().key_id, "k2");
        assert!(new.index_candidates("ckss2skxebow").contains(&old_index));
        assert_ne!(new.index("ckss2skxebow").unwrap().1, old_index);
    }

    #[test]
    fn bad_configuration_names_the_key() {
        let k = KeyRing::generate_key().unwrap();
        let e = KeyRing::from_config("K1", [("K1", k.as_str())]).unwrap_err();
        assert!(e.to_string().contains("K1"));
        let e = KeyRing::from_config("k1", [("k1", "c2hvcnQ=")]).unwrap_err();
        assert!(e.to_string().contains("keys.ring.k1"));
        let e = KeyRing::from_config("k9", [("k1", k.as_str())]).unwrap_err();
        assert!(e.to_string().contains("k9"));
        assert!(!format!("{:?}", KeyRing::from_config("k1", [("k1", k.as_str())]).unwrap()).contains(&k));
    }
}
