//! Input checks for user fields (spec §2.3, §5.15): email, E.164 phone numbers, metadata.

use crate::Error;
use serde_json::{Map, Value};

/// Metadata limits: 20 top-level keys, 4 KB serialised.
pub const METADATA_MAX_KEYS: usize = 20;
pub const METADATA_MAX_BYTES: usize = 4096;

/// A plausible address: one `@`, non-empty local part, a dotted domain, no spaces, ≤ 254
/// bytes. Stored lower-cased so uniqueness ignores case.
pub fn email(s: &str) -> Result<String, Error> {
    let s = s.trim();
    let Some((local, domain)) = s.split_once('@') else {
        return Err(Error::InvalidEmail);
    };
    let ok = s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.contains(char::is_whitespace)
        && !domain.contains('@')
        && s.is_ascii();
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::InvalidEmail)
    }
}

/// E.164: `+`, a non-zero digit, 7 to 15 digits in all.
pub fn phone_number(s: &str) -> Result<String, Error> {
    let digits = s.strip_prefix('+').ok_or(Error::InvalidPhoneNumber)?;
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Error::InvalidPhoneNumber)
    }
}

/// Checks a whole metadata object against the limits.
pub fn metadata(m: &Map<String, Value>) -> Result<(), Error> {
    if m.len() > METADATA_MAX_KEYS {
        return Err(Error::MetadataTooManyKeys);
    }
    let size = serde_json::to_vec(m).map_err(Error::internal)?.len();
    if size > METADATA_MAX_BYTES {
        return Err(Error::MetadataTooLarge);
    }
    Ok(())
}

/// Merges a patch at the top level: a `null` deletes the key, anything else replaces it whole.
pub fn merge_metadata(base: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emails() {
        assert_eq!(email("Ada@Example.COM").unwrap(), "ada@example.com");
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@@b.c", "ä@b.c",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert!(phone_number("+15555550100").is_ok());
        for bad in [
            "15555550100",
            "+0555555",
            "+1 555 555",
            "+12",
            "+1234567890123456",
        ] {
            assert!(phone_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_limits_and_merge() {
        let mut m: Map<String, Value> = (0..20).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(metadata(&m).is_ok());
        m.insert("k20".into(), json!(1));
        assert_eq!(metadata(&m).unwrap_err().error_type(), "metadata_too_many_keys");
        let big: Map<String, Value> = [("k".to_string(), json!("x".repeat(5000)))].into_iter().collect();
        assert_eq!(metadata(&big).unwrap_err().error_type(), "metadata_too_large");
        let mut base = json!({"a": 1, "b": {"x": 1}, "c": 3})
            .as_object()
            .unwrap()
            .clone();
        let patch = json!({"a": null, "b": {"y": 2}, "d": 4})
            .as_object()
            .unwrap()
            .clone();
        merge_metadata(&mut base, &patch);
        assert_eq!(Value::Object(base), json!({"b": {"y": 2}, "c": 3, "d": 4}));
    }
}
