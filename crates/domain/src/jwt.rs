//! RS256 session JWTs (spec §2.1 "Session JWT", §2.1 "JWK").
//!
//! Keys are generated with the `rsa` crate (key generation only: its private-key operations are
//! not constant-time, RUSTSEC-2023-0071) and every signature is made by `ring`, which signs in
//! constant time from the PKCS#8 key. The compact JWS encoding is three base64url parts, small
//! enough to write here rather than pull a JWT crate whose RSA backends are either a C build
//! (aws-lc) or the non-constant-time `rsa` signer.

use crate::Error;
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};
use std::fmt;

/// A project's signing key, ready to sign.
pub struct SigningKey {
    pub kid: String,
    pair: ring::rsa::KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey {{ kid: {:?} }}", self.kid)
    }
}

/// The public half, as JWKS serves it and as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    /// base64url of the modulus, big-endian, no padding.
    pub n: String,
    /// base64url of the exponent.
    pub e: String,
}

/// A freshly generated key pair: the PKCS#8 DER of the private key (to be sealed) and its
/// public half.
pub struct GeneratedKey {
    pub pkcs8_der: Vec<u8>,
    pub public: PublicJwk,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedKey {{ kid: {:?} }}", self.public.kid)
    }
}

/// Generates a 2048-bit RSA key pair.
pub fn generate(kid: &str) -> Result<GeneratedKey, Error> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| Error::internal(format!("rsa key generation failed: {e}")))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| Error::internal(format!("pkcs8 encoding failed: {e}")))?;
    Ok(GeneratedKey {
        pkcs8_der: der.as_bytes().to_vec(),
        public: PublicJwk {
            kid: kid.to_owned(),
            n: BASE64URL_NOPAD.encode(&key.n().to_bytes_be()),
            e: BASE64URL_NOPAD.encode(&key.e().to_bytes_be()),
        },
    })
}

impl SigningKey {
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<Self, Error> {
        let pair = ring::rsa::KeyPair::from_pkcs8(der)
            .map_err(|e| Error::internal(format!("signing key {kid} is unusable: {e}")))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            pair,
        })
    }

    /// Signs `claims` as a compact JWS with header `{alg: RS256, typ: JWT, kid}`.
    pub fn sign(&self, claims: &Value) -> Result<String, Error> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let mut msg = BASE64URL_NOPAD.encode(&serde_json::to_vec(&header).map_err(Error::internal)?);
        msg.push('.');
        msg.push_str(&BASE64URL_NOPAD.encode(&serde_json::to_vec(claims).map_err(Error::internal)?));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Error::internal("rsa signing failed"))?;
        msg.push('.');
        msg.push_str(&BASE64URL_NOPAD.encode(&sig));
        Ok(msg)
    }
}

/// Why a presented JWT was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or not RS256.
    Malformed,
    /// Signed by a key this project does not have, or the signature does not verify.
    BadSignature,
}

/// Whether `s` has the shape of a compact JWS: three dot-separated runs of base64url
/// characters, the first two non-empty. Anything else cannot be a session JWT at all.
pub fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Verifies a compact RS256 JWS against the project's public keys and returns its claims.
/// Time claims are the caller's business (an expired JWT of a live session is refreshed).
pub fn verify(token: &str, keys: &[PublicJwk]) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let decode = |part: &str| {
        BASE64URL_NOPAD
            .decode(part.as_bytes())
            .map_err(|_| JwtError::Malformed)
    };
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
    if header["alg"] != "RS256" {
        return Err(JwtError::Malformed);
    }
    let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Malformed)?;
    if !claims.is_object() {
        return Err(JwtError::Malformed);
    }
    let sig = decode(s)?;
    let kid = header["kid"].as_str().ok_or(JwtError::Malformed)?;
    let key = keys.iter().find(|k| k.kid == kid).ok_or(JwtError::BadSignature)?;
    let n = BASE64URL_NOPAD
        .decode(key.n.as_bytes())
        .map_err(|_| JwtError::BadSignature)?;
    let e = BASE64URL_NOPAD
        .decode(key.e.as_bytes())
        .map_err(|_| JwtError::BadSignature)?;
    let signed_len = h.len() + 1 + p.len();
    let msg = token.get(..signed_len).ok_or(JwtError::Malformed)?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, msg.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampering_is_caught() {
        let g = generate("jwk-test-1").unwrap();
        let key = SigningKey::from_pkcs8("jwk-test-1", &g.pkcs8_der).unwrap();
        let token = key.sign(&json!({"sub": "user-test-1", "exp": 10})).unwrap();
        let claims = verify(&token, std::slice::from_ref(&g.public)).unwrap();
        assert_eq!(claims["sub"], "user-test-1");
        let header: Value = serde_json::from_slice(
            &BASE64URL_NOPAD
                .decode(token.split('.').next().unwrap().as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "jwk-test-1"}));

        // Change the payload, keep the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = BASE64URL_NOPAD.encode(br#"{"sub":"user-test-2","exp":10}"#);
        assert_eq!(
            verify(&parts.join("."), std::slice::from_ref(&g.public)),
            Err(JwtError::BadSignature)
        );
        // Another key with the same kid does not verify it.
        let other = generate("jwk-test-1").unwrap();
        assert_eq!(verify(&token, &[other.public]), Err(JwtError::BadSignature));
        // Unknown kid, and garbage.
        assert_eq!(verify(&token, &[]), Err(JwtError::BadSignature));
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(verify(bad, std::slice::from_ref(&g.public)).is_err(), "{bad}");
        }
        // alg none is refused outright.
        let none = format!(
            "{}.{}.",
            BASE64URL_NOPAD.encode(br#"{"alg":"none","kid":"jwk-test-1"}"#),
            BASE64URL_NOPAD.encode(b"{}")
        );
        assert_eq!(verify(&none, &[g.public]), Err(JwtError::Malformed));
    }
}
