//! TOTP (RFC 6238 over RFC 4226): secrets, codes, the ±skew window with replay-aware step
//! matching, and the otpauth URI + QR code a user scans (spec §4, §5.5, §5.6).
//!
//! The HOTP maths is totp-rs's; Latch adds what the crate leaves to its caller: matching every
//! candidate step without early exit, returning the step so it can be accepted once, and strict
//! parsing of what clients send.

use crate::Error;
use data_encoding::{BASE32_NOPAD, BASE64};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt;
use subtle::{Choice, ConstantTimeEq};
use totp_rs::{Algorithm, Builder};

/// Bytes in a TOTP secret: 160 bits, as RFC 4226 R6 recommends and Stytch issues.
pub const SECRET_LEN: usize = 20;

/// A shared TOTP secret. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; SECRET_LEN]);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// 20 bytes from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        Ok(TotpSecret(crate::random::bytes()?))
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let arr: [u8; SECRET_LEN] = b
            .try_into()
            .map_err(|_| Error::internal("stored totp secret has the wrong length"))?;
        Ok(TotpSecret(arr))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Upper-case base32 without padding: 32 characters.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }
}

/// The algorithm parameters; Stytch's are SHA1, 6 digits, 30 s, ±1 step (spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub period_secs: u64,
    pub skew_steps: u8,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams {
            period_secs: 30,
            skew_steps: 1,
        }
    }
}

impl TotpParams {
    /// Bounds checked at start (R-OTP-3, R-N-1): skew 0..=2, period 15..=120 s.
    pub fn validate(&self) -> Result<(), String> {
        if self.skew_steps > 2 {
            return Err(format!("totp.skew_steps must be 0 to 2, got {}", self.skew_steps));
        }
        if !(15..=120).contains(&self.period_secs) {
            return Err(format!(
                "totp.period_secs must be 15 to 120, got {}",
                self.period_secs
            ));
        }
        Ok(())
    }

    /// The time step a Unix time falls in (never truncated to 32 bits, R-OTP-2).
    pub fn step_at(&self, unix_secs: i64) -> u64 {
        u64::try_from(unix_secs).unwrap_or(0) / self.period_secs
    }
}

/// The code for one time step, `digits` long with leading zeros.
pub fn code_at_step(secret: &[u8], step: u64, period_secs: u64, digits: u8) -> Result<String, Error> {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(period_secs)
        .with_secret(secret)
        .build()
        .map_err(|e| Error::internal(format!("totp parameters rejected: {e}")))?;
    let time = step
        .checked_mul(period_secs)
        .ok_or_else(|| Error::internal("totp time step overflows"))?;
    Ok(totp.generate(time).to_string())
}

/// A 6-digit code as a client sent it, already checked for shape.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(<redacted>)")
    }
}

impl TotpCode {
    /// Exactly six ASCII digits, nothing trimmed (R-A-10); a recovery-code-shaped input gets
    /// its own error (spec §5.3).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(TotpCode(s.to_owned()));
        }
        if crate::recovery::normalise(s).is_some() {
            return Err(Error::RecoveryCodeUsedAsTotpCode);
        }
        Err(Error::InvalidTotpCode)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Finds the step in `now ± skew` whose code equals `code`. Every candidate is computed and
/// compared in constant time, with no early exit, so timing does not tell which step matched.
/// The caller must accept the returned step at most once (spec §5.5).
pub fn matching_step(
    secret: &TotpSecret,
    code: &TotpCode,
    unix_now: i64,
    params: TotpParams,
) -> Result<Option<u64>, Error> {
    let now_step = params.step_at(unix_now);
    let skew = u64::from(params.skew_steps);
    let mut found: Option<u64> = None;
    for step in now_step.saturating_sub(skew)..=now_step.saturating_add(skew) {
        let candidate = code_at_step(secret.as_bytes(), step, params.period_secs, 6)?;
        let hit: Choice = candidate.as_bytes().ct_eq(code.as_str().as_bytes());
        // Later steps win, so a code valid in two windows (a collision) moves replay protection
        // as far forward as possible.
        if bool::from(hit) {
            found = Some(step);
        }
    }
    Ok(found)
}

/// Characters left as they are in an otpauth label or parameter (RFC 3986 unreserved).
const OTPAUTH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
/// (spec §5.6).
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str, period_secs: u64) -> String {
    let issuer = utf8_percent_encode(issuer, OTPAUTH).to_string();
    let account = utf8_percent_encode(account, OTPAUTH);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits=6&period={period_secs}",
        secret.to_base32()
    )
}

/// A QR code of `text` as a `data:image/png;base64,…` URL: 8-bit greyscale, 4-module quiet
/// zone, about 200 px wide like Stytch's.
pub fn qr_data_url(text: &str) -> Result<String, Error> {
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::internal(format!("qr encoding failed: {e}")))?;
    let modules = qr.width();
    let colors = qr.to_colors();
    const QUIET: usize = 4;
    let side_modules = modules + 2 * QUIET;
    let scale = (200 / side_modules).max(1);
    let side = side_modules * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * scale..(my + 1) * scale {
                let row = y * side;
                for px in pixels.iter_mut().skip(row + mx * scale).take(scale) {
                    *px = 0;
                }
            }
        }
    }
    let side_u32 = u32::try_from(side).map_err(Error::internal)?;
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, side_u32, side_u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(Error::internal)?;
        w.write_image_data(&pixels).map_err(Error::internal)?;
    }
    Ok(format!("data:image/png;base64,{}", BASE64.encode(&png_bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        // HOTP(K, C) is TOTP with a 1-second period at time C.
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
            "520489",
        ];
        for (counter, w) in want.iter().enumerate() {
            assert_eq!(
                code_at_step(RFC_SEED, counter as u64, 1, 6).unwrap(),
                *w,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn rfc6238_appendix_b_sha1_vectors_8_and_6_digits() {
        let table: [(u64, &str, &str); 6] = [
            (59, "94287082", "287082"),
            (1_111_111_109, "07081804", "081804"),
            (1_111_111_111, "14050471", "050471"),
            (1_234_567_890, "89005924", "005924"),
            (2_000_000_000, "69279037", "279037"),
            (20_000_000_000, "65353130", "353130"),
        ];
        for (t, eight, six) in table {
            assert_eq!(code_at_step(RFC_SEED, t / 30, 30, 8).unwrap(), eight, "t={t}");
            assert_eq!(code_at_step(RFC_SEED, t / 30, 30, 6).unwrap(), six, "t={t}");
        }
        // T beyond 32 bits (R-OTP-2).
        assert_eq!(20_000_000_000u64 / 30, 0x27BC86AA);
    }

    #[test]
    fn window_accepts_one_step_either_side_and_nothing_further() {
        let secret = TotpSecret::from_bytes(RFC_SEED).unwrap();
        let p = TotpParams::default();
        let now: i64 = 1_700_000_015; // middle of a step
        let t = p.step_at(now);
        for (delta, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let step = (t as i64 + delta) as u64;
            let code = TotpCode::parse(&code_at_step(RFC_SEED, step, 30, 6).unwrap()).unwrap();
            let got = matching_step(&secret, &code, now, p).unwrap();
            assert_eq!(got.is_some(), ok, "delta {delta}");
            if ok {
                assert_eq!(got, Some(step));
            }
        }
        // Exactly at the step boundary the previous step is still accepted.
        let boundary = (t as i64 + 1) * 30;
        let prev = TotpCode::parse(&code_at_step(RFC_SEED, t, 30, 6).unwrap()).unwrap();
        assert_eq!(matching_step(&secret, &prev, boundary, p).unwrap(), Some(t));
    }

    #[test]
    fn skew_zero_accepts_only_the_current_step() {
        let secret = TotpSecret::from_bytes(RFC_SEED).unwrap();
        let p = TotpParams {
            period_secs: 30,
            skew_steps: 0,
        };
        let now = 1_700_000_015;
        let t = p.step_at(now);
        let prev = TotpCode::parse(&code_at_step(RFC_SEED, t - 1, 30, 6).unwrap()).unwrap();
        assert_eq!(matching_step(&secret, &prev, now, p).unwrap(), None);
    }

    #[test]
    fn code_shapes_are_checked_strictly() {
        assert!(TotpCode::parse("012345").is_ok());
        for bad in [
            "12345",
            "1234567",
            "12345 ",
            " 12345",
            "+12345",
            "١٢٣٤٥٦",
            "１２３４５６",
            "",
            "abcdef",
        ] {
            assert_eq!(
                TotpCode::parse(bad).unwrap_err().error_type(),
                "invalid_totp_code",
                "{bad:?}"
            );
        }
        assert_eq!(
            TotpCode::parse("ckss-2skx-ebow").unwrap_err().error_type(),
            "recovery_code_used_as_totp_code"
        );
    }

    #[test]
    fn params_are_bounded() {
        assert!(
            TotpParams {
                period_secs: 30,
                skew_steps: 3
            }
            .validate()
            .is_err()
        );
        assert!(
            TotpParams {
                period_secs: 121,
                skew_steps: 1
            }
            .validate()
            .is_err()
        );
        assert!(TotpParams::default().validate().is_ok());
    }

    #[test]
    fn secrets_are_20_random_bytes_in_32_base32_chars() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_ne!(a, b);
        let s = a.to_base32();
        assert_eq!(s.len(), 32);
        assert_eq!(BASE32_NOPAD.decode(s.as_bytes()).unwrap().len(), 20);
        assert!(!format!("{a:?}").contains(&s));
    }

    #[test]
    fn otpauth_uri_follows_the_spec_and_escapes_labels() {
        let secret = TotpSecret::from_bytes(RFC_SEED).unwrap();
        let uri = otpauth_uri(&secret, "Acme Inc", "a+b@example.com", 30);
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Inc:a%2Bb%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Inc&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn qr_code_is_a_png_data_url_that_decodes_back_to_the_uri() {
        let secret = TotpSecret::from_bytes(RFC_SEED).unwrap();
        let uri = otpauth_uri(&secret, "Latch", "user@example.com", 30);
        let url = qr_data_url(&uri).unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = BASE64.decode(b64.as_bytes()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert!(info.width >= 150 && info.width <= 250, "{}", info.width);
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, uri);
    }
}
