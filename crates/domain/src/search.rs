//! Users search (spec §2.3 "Search users"): the query a client sends, parsed into filters the
//! store can run, and the opaque, tamper-evident pagination cursor.

use crate::Error;
use crate::ids::{self, Kind};
use serde_json::Value;

/// Results per page: default 100, at most 1000.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;

/// One filter of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    CreatedAfter(i64),
    CreatedBefore(i64),
    Status(crate::model::UserStatus),
    UserIds(Vec<String>),
    FullNameFuzzy(String),
    Emails(Vec<String>),
    EmailFuzzy(String),
    EmailIds(Vec<String>),
    EmailVerified(bool),
    PhoneNumbers(Vec<String>),
    PhoneFuzzy(String),
    PhoneIds(Vec<String>),
    PhoneVerified(bool),
    TotpIds(Vec<String>),
    TotpVerified(bool),
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub limit: u64,
    /// Resume after this (created_at, user id).
    pub after: Option<(i64, String)>,
    /// `true` for AND, `false` for OR.
    pub all: bool,
    pub filters: Vec<Filter>,
}

/// Filters Stytch defines for factors Latch does not have.
const UNSUPPORTED: [&str; 8] = [
    "oauth_provider",
    "webauthn_registration_verified",
    "webauthn_registration_id",
    "crypto_wallet_id",
    "crypto_wallet_address",
    "crypto_wallet_verified",
    "password_exists",
    "biometric_registration_verified",
];

fn bad(filter: &str, want: &str) -> Error {
    Error::UserSearchInvalidFilterValue(format!("filter_value of {filter} must be {want}"))
}

fn string_list(filter: &str, v: &Value) -> Result<Vec<String>, Error> {
    let items = v.as_array().ok_or_else(|| bad(filter, "an array of strings"))?;
    if items.is_empty() || items.len() > 1000 {
        return Err(bad(filter, "an array of 1 to 1000 strings"));
    }
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(filter, "an array of strings"))
        })
        .collect()
}

fn fuzzy(filter: &str, v: &Value) -> Result<String, Error> {
    let s = v.as_str().ok_or_else(|| bad(filter, "a string"))?;
    if s.is_empty() || s.chars().count() > 200 {
        return Err(bad(filter, "a string of 1 to 200 characters"));
    }
    Ok(s.to_lowercase())
}

fn boolean(filter: &str, v: &Value) -> Result<bool, Error> {
    v.as_bool().ok_or_else(|| bad(filter, "true or false"))
}

fn time(filter: &str, v: &Value) -> Result<i64, Error> {
    let s = v.as_str().ok_or_else(|| bad(filter, "an RFC 3339 time"))?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|_| bad(filter, "an RFC 3339 time"))
}

/// Parses one `{filter_name, filter_value}` operand.
fn operand(o: &Value, out: &mut Vec<Filter>) -> Result<(), Error> {
    let name = o["filter_name"].as_str().ok_or_else(|| {
        Error::UserSearchInvalidFilterValue("every operand needs a string filter_name".into())
    })?;
    let v = &o["filter_value"];
    let f = match name {
        "created_at_greater_than" => Filter::CreatedAfter(time(name, v)?),
        "created_at_less_than" => Filter::CreatedBefore(time(name, v)?),
        "created_at_between" => {
            out.push(Filter::CreatedAfter(time(name, &v["greater_than"])?));
            Filter::CreatedBefore(time(name, &v["less_than"])?)
        }
        "status" => Filter::Status(
            v.as_str()
                .and_then(crate::model::UserStatus::parse)
                .ok_or_else(|| bad(name, "\"active\" or \"pending\""))?,
        ),
        "user_id" => Filter::UserIds(string_list(name, v)?),
        "full_name_fuzzy" => Filter::FullNameFuzzy(fuzzy(name, v)?),
        "email_address" => Filter::Emails(
            string_list(name, v)?
                .into_iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
        ),
        "email_address_fuzzy" => Filter::EmailFuzzy(fuzzy(name, v)?),
        "email_id" => Filter::EmailIds(string_list(name, v)?),
        "email_verified" => Filter::EmailVerified(boolean(name, v)?),
        "phone_number" => Filter::PhoneNumbers(string_list(name, v)?),
        "phone_number_fuzzy" => Filter::PhoneFuzzy(fuzzy(name, v)?),
        "phone_id" => Filter::PhoneIds(string_list(name, v)?),
        "phone_verified" => Filter::PhoneVerified(boolean(name, v)?),
        "totp_id" => Filter::TotpIds(string_list(name, v)?),
        "totp_verified" => Filter::TotpVerified(boolean(name, v)?),
        n if UNSUPPORTED.contains(&n) => return Err(Error::UserSearchFilterNotSupported(n.to_owned())),
        n => {
            return Err(Error::UserSearchFilterNameNotRecognized(
                n.chars().take(100).collect(),
            ));
        }
    };
    out.push(f);
    Ok(())
}

/// Parses `limit`, `query` and the already-opened cursor position.
pub fn parse(
    limit: Option<i64>,
    query: Option<&Value>,
    after: Option<(i64, String)>,
) -> Result<Search, Error> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=1000).contains(&l) => l.unsigned_abs(),
        Some(_) => return Err(Error::UserSearchInvalidLimit),
    };
    let mut search = Search {
        limit,
        after,
        all: true,
        filters: Vec::new(),
    };
    let Some(q) = query.filter(|q| !q.is_null()) else {
        return Ok(search);
    };
    let q = q
        .as_object()
        .ok_or_else(|| Error::UserSearchInvalidFilterValue("query must be an object".into()))?;
    search.all = match q.get("operator") {
        None | Some(Value::Null) => true,
        Some(Value::String(o)) if o == "AND" => true,
        Some(Value::String(o)) if o == "OR" => false,
        Some(_) => {
            return Err(Error::UserSearchInvalidFilterValue(
                "operator must be \"AND\" or \"OR\"".into(),
            ));
        }
    };
    match q.get("operands") {
        None | Some(Value::Null) => {}
        Some(Value::Array(ops)) if ops.len() <= 50 => {
            for o in ops {
                operand(o, &mut search.filters)?;
            }
        }
        Some(_) => {
            return Err(Error::UserSearchInvalidFilterValue(
                "operands must be an array of at most 50".into(),
            ));
        }
    }
    Ok(search)
}

/// Cursors: `created_at`, user id and project id, MACed (so a changed cursor is refused, not
/// followed) and base64url-encoded. The MAC key comes from the key ring (`KeyRing::mac`).
pub fn encode_cursor(
    keys: &crate::crypto::KeyRing,
    project_id: &str,
    at: (i64, &str),
) -> Result<String, Error> {
    let payload = format!("{}|{}|{}", at.0, at.1, project_id);
    let mac = keys.mac("latch search cursor", payload.as_bytes())?;
    let mut bytes = payload.into_bytes();
    bytes.push(b'|');
    bytes.extend_from_slice(&mac[..16]);
    Ok(data_encoding::BASE64URL_NOPAD.encode(&bytes))
}

/// Opens a cursor of this project; anything else is `user_search_invalid_cursor`.
pub fn decode_cursor(
    keys: &crate::crypto::KeyRing,
    project_id: &str,
    cursor: &str,
) -> Result<(i64, String), Error> {
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(cursor.as_bytes())
        .map_err(|_| Error::UserSearchInvalidCursor)?;
    if bytes.len() < 17 {
        return Err(Error::UserSearchInvalidCursor);
    }
    let (payload, tail) = bytes.split_at(bytes.len() - 17);
    if tail.first() != Some(&b'|') || !keys.verify_mac("latch search cursor", payload, &tail[1..]) {
        return Err(Error::UserSearchInvalidCursor);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Error::UserSearchInvalidCursor)?;
    let mut parts = text.splitn(3, '|');
    let (Some(at), Some(id), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::UserSearchInvalidCursor);
    };
    let at: i64 = at.parse().map_err(|_| Error::UserSearchInvalidCursor)?;
    if pid != project_id || ids::classify(Kind::User, id) == ids::Parsed::Other {
        return Err(Error::UserSearchInvalidCursor);
    }
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_parse_and_bad_ones_are_named() {
        let q = json!({"operator": "OR", "operands": [
            {"filter_name": "totp_verified", "filter_value": true},
            {"filter_name": "created_at_between", "filter_value": {"greater_than": "2021-01-01T00:00:00Z", "less_than": "2022-01-01T00:00:00Z"}},
            {"filter_name": "email_address", "filter_value": ["A@B.co"]},
        ]});
        let s = parse(Some(10), Some(&q), None).unwrap();
        assert!(!s.all);
        assert_eq!(s.filters.len(), 4);
        assert_eq!(s.filters[3], Filter::Emails(vec!["a@b.co".into()]));
        for (limit, query, error_type) in [
            (Some(0), json!(null), "user_search_invalid_limit"),
            (Some(1001), json!(null), "user_search_invalid_limit"),
            (
                None,
                json!({"operands": [{"filter_name": "nope", "filter_value": 1}]}),
                "user_search_filter_name_not_recognized",
            ),
            (
                None,
                json!({"operands": [{"filter_name": "oauth_provider", "filter_value": "google"}]}),
                "user_search_filter_not_supported",
            ),
            (
                None,
                json!({"operands": [{"filter_name": "totp_verified", "filter_value": "yes"}]}),
                "user_search_invalid_filter_value",
            ),
            (
                None,
                json!({"operands": [{"filter_name": "user_id", "filter_value": "x"}]}),
                "user_search_invalid_filter_value",
            ),
            (
                None,
                json!({"operator": "XOR"}),
                "user_search_invalid_filter_value",
            ),
            (None, json!([1]), "user_search_invalid_filter_value"),
        ] {
            assert_eq!(
                parse(limit, Some(&query), None).unwrap_err().error_type(),
                error_type,
                "{query}"
            );
        }
    }

    #[test]
    fn an_operator_of_the_wrong_type_is_refused() {
        let e = parse(None, Some(&json!({"operator": {}, "operands": []})), None).unwrap_err();
        assert_eq!(e.error_type(), "user_search_invalid_filter_value");
        assert!(parse(None, Some(&json!({"operator": null})), None).unwrap().all);
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering_and_other_projects() {
        let k = crate::crypto::KeyRing::generate_key().unwrap();
        let ring = crate::crypto::KeyRing::from_config("k1", [("k1", k.as_str())]).unwrap();
        let c = encode_cursor(
            &ring,
            "project-test-1",
            (42, "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"),
        )
        .unwrap();
        assert_eq!(decode_cursor(&ring, "project-test-1", &c).unwrap().0, 42);
        assert!(decode_cursor(&ring, "project-test-2", &c).is_err());
        let mut b = data_encoding::BASE64URL_NOPAD.decode(c.as_bytes()).unwrap();
        b[0] ^= 1;
        let tampered = data_encoding::BASE64URL_NOPAD.encode(&b);
        assert_eq!(
            decode_cursor(&ring, "project-test-1", &tampered)
                .unwrap_err()
                .error_type(),
            "user_search_invalid_cursor"
        );
        assert!(decode_cursor(&ring, "project-test-1", "garbage!").is_err());
        assert!(decode_cursor(&ring, "project-test-1", "").is_err());
    }
}
