//! Recovery codes: ten per TOTP, `xxxx-xxxx-xxxx` over `[a-z0-9]` (≈62 bits each), and the
//! normalisation applied before matching (spec §4, §5.3).

use crate::Error;
use crate::crypto::KeyRing;
use crate::ids::{self, Environment, Kind};
use crate::model::NewRecoveryCode;
use std::fmt;

/// How many codes a TOTP gets.
pub const COUNT: usize = 10;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new TOTP's [`COUNT`] codes: the rows to store (each sealed and indexed under the active
/// key, bound to its own id) and the codes as the user is shown them, once.
pub fn issue(keys: &KeyRing, env: Environment) -> Result<(Vec<NewRecoveryCode>, Vec<String>), Error> {
    let mut codes = Vec::with_capacity(COUNT);
    let mut shown = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        let code = RecoveryCode::generate()?;
        let id = ids::mint(Kind::RecoveryCode, env);
        let (index_key_id, index) = keys.index(code.normalised())?;
        let sealed = keys.seal(code.normalised().as_bytes(), &id)?;
        codes.push(NewRecoveryCode {
            id,
            index_key_id,
            index,
            sealed,
        });
        shown.push(code.display());
    }
    Ok((codes, shown))
}

/// A recovery code in its normalised form: 12 characters of `[a-z0-9]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

impl RecoveryCode {
    /// A fresh code, uniform over the alphabet (rejection sampling, no modulo bias).
    pub fn generate() -> Result<Self, Error> {
        let mut out = String::with_capacity(12);
        while out.len() < 12 {
            for b in crate::random::bytes::<32>()? {
                // 252 = 7 × 36: bytes at or above it would favour the first letters.
                if b < 252 && out.len() < 12 {
                    out.push(char::from(ALPHABET[usize::from(b % 36)]));
                }
            }
        }
        Ok(RecoveryCode(out))
    }

    /// Parses client input (spec §5.3): six digits are a TOTP code sent to the wrong place;
    /// anything else must normalise to 12 `[a-z0-9]`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let t = input.trim();
        if t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::TotpCodeUsedAsRecoveryCode);
        }
        normalise(input)
            .map(RecoveryCode)
            .ok_or(Error::InvalidRecoveryCode)
    }

    /// The normalised form, which is what the index HMAC covers.
    pub fn normalised(&self) -> &str {
        &self.0
    }

    /// The display form `xxxx-xxxx-xxxx`.
    pub fn display(&self) -> String {
        // Pushes, not `format!`: `recovery_codes` shows ten of these per TOTP (issue 8).
        let s = &self.0;
        let mut out = String::with_capacity(14);
        out.push_str(&s[0..4]);
        out.push('-');
        out.push_str(&s[4..8]);
        out.push('-');
        out.push_str(&s[8..12]);
        out
    }
}

/// Trimmed, lower-cased, hyphens and spaces removed; `Some` only if 12 `[a-z0-9]` remain.
pub fn normalise(input: &str) -> Option<String> {
    // Byte by byte into a 12-byte buffer: any byte outside `[A-Za-z0-9 -]` (multi-byte UTF-8
    // included) or a 13th symbol rejects the input without building the rest.
    let mut n = String::with_capacity(12);
    for b in input.trim().bytes() {
        match b {
            b'-' | b' ' => {}
            b'a'..=b'z' | b'0'..=b'9' | b'A'..=b'Z' if n.len() < 12 => {
                n.push(char::from(b.to_ascii_lowercase()))
            }
            _ => return None,
        }
    }
    (n.len() == 12).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_stytch_shape() {
        for _ in 0..200 {
            let c = RecoveryCode::generate().unwrap();
            let d = c.display();
            assert_eq!(d.len(), 14);
            let parts: Vec<_> = d.split('-').collect();
            assert_eq!(parts.len(), 3);
            assert!(
                parts
                    .iter()
                    .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            );
            assert_eq!(RecoveryCode::parse(&d).unwrap(), c);
        }
    }

    #[test]
    fn input_is_normalised_before_matching() {
        let want = RecoveryCode::parse("ckss-2skx-ebow").unwrap();
        for same in [
            " CKSS-2SKX-EBOW ",
            "ckss2skxebow",
            "ckss 2skx ebow",
            "Ckss-2skx-Ebow",
        ] {
            assert_eq!(RecoveryCode::parse(same).unwrap(), want, "{same}");
        }
        assert_eq!(
            RecoveryCode::parse("123456").unwrap_err().error_type(),
            "totp_code_used_as_recovery_code"
        );
        for bad in [
            "",
            "ckss-2skx-ebo",
            "ckss-2skx-ebow-x",
            "ckss_2skx_ebow",
            "çkss-2skx-ebow",
        ] {
            assert_eq!(
                RecoveryCode::parse(bad).unwrap_err().error_type(),
                "invalid_recovery_code",
                "{bad}"
            );
        }
    }

    #[test]
    fn letters_and_digits_are_roughly_uniform() {
        // Chi-square smoke test over 12 000 characters, 35 degrees of freedom: the 99.9 %
        // critical value is 66.6, so a fair generator fails this about once in a thousand runs;
        // a modulo-biased one (first 4 symbols at 8/256 vs 7/256) fails it almost always at
        // much larger sizes, so this guards the shape, not subtle bias.
        let mut counts = [0usize; 36];
        for _ in 0..1000 {
            for b in RecoveryCode::generate().unwrap().normalised().bytes() {
                let i = ALPHABET.iter().position(|a| *a == b).unwrap();
                counts[i] += 1;
            }
        }
        let expected = 12_000.0 / 36.0;
        let chi: f64 = counts
            .iter()
            .map(|c| (*c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi < 80.0, "chi-square {chi} counts {counts:?}");
    }
}
