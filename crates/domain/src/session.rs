//! Sessions (spec §2.1 Session, §2.4; architecture §7): opaque tokens stored only as hashes,
//! the factors that authenticated them, custom claims, and the RS256 JWT that mirrors them.

use crate::Error;
use crate::clock::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Session JWTs live five minutes whatever the session's length (spec §2.1).
pub const JWT_LIFETIME_SECS: i64 = 300;
/// Bounds of `session_duration_minutes`: 5 minutes to 366 days.
pub const DURATION_MINUTES: std::ops::RangeInclusive<i64> = 5..=527_040;
/// Custom claims may take at most this many bytes of JSON.
pub const CUSTOM_CLAIMS_MAX_BYTES: usize = 4096;
/// The claim that carries the session in a JWT.
pub const SESSION_CLAIM: &str = "https://stytch.com/session";
const RESERVED_CLAIMS: [&str; 8] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", SESSION_CLAIM];

/// Checks `session_duration_minutes`.
pub fn duration_secs(minutes: i64) -> Result<i64, Error> {
    if DURATION_MINUTES.contains(&minutes) {
        Ok(minutes * 60)
    } else {
        Err(Error::InvalidSessionDurationMinutes)
    }
}

/// A new session token: 33 random bytes, 44 base64url characters (264 bits).
pub fn new_token() -> Result<String, Error> {
    Ok(data_encoding::BASE64URL_NOPAD.encode(&crate::random::bytes::<33>()?))
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A token's shape, checked before any lookup.
pub fn check_token_shape(token: &str) -> Result<(), Error> {
    let ok = (20..=200).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSessionToken)
    }
}

/// Custom claims as sent: reserved names are dropped (spec §2.2), the rest must fit in 4 KB.
pub fn clean_custom_claims(mut claims: Map<String, Value>) -> Result<Map<String, Value>, Error> {
    for r in RESERVED_CLAIMS {
        claims.remove(r);
    }
    if serde_json::to_vec(&claims).map_err(Error::internal)?.len() > CUSTOM_CLAIMS_MAX_BYTES {
        return Err(Error::CustomClaimsTooLarge);
    }
    Ok(claims)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    Totp,
    RecoveryCode,
}

/// One factor that authenticated a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub kind: FactorKind,
    pub totp_id: String,
    /// Set for recovery-code factors.
    pub recovery_code_id: Option<String>,
    pub created_at: i64,
    pub last_authenticated_at: i64,
}

impl Factor {
    /// Stytch's AuthenticationFactor object.
    pub fn to_wire(&self) -> Value {
        let times = |v: &mut Value| {
            v["created_at"] = json!(rfc3339(self.created_at));
            v["updated_at"] = json!(rfc3339(self.last_authenticated_at));
            v["last_authenticated_at"] = json!(rfc3339(self.last_authenticated_at));
        };
        let mut v = match self.kind {
            FactorKind::Totp => json!({
                "type": "totp",
                "delivery_method": "authenticator_app",
                "authenticator_app_factor": {"totp_id": self.totp_id},
            }),
            FactorKind::RecoveryCode => json!({
                "type": "recovery_codes",
                "delivery_method": "recovery_code",
                "recovery_code_factor": {"totp_recovery_code_id": self.recovery_code_id.clone().unwrap_or_default()},
            }),
        };
        times(&mut v);
        v
    }

    /// Records this factor on a session: a factor of the same kind and TOTP is refreshed
    /// rather than listed twice.
    pub fn merge_into(&self, factors: &mut Vec<Factor>) {
        match factors
            .iter_mut()
            .find(|f| f.kind == self.kind && f.totp_id == self.totp_id)
        {
            Some(f) => {
                f.last_authenticated_at = self.last_authenticated_at;
                f.recovery_code_id.clone_from(&self.recovery_code_id);
            }
            None => factors.push(self.clone()),
        }
    }
}

/// A session as stored (the token only as its hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// The TOTP whose factors built it; deleting that TOTP ends the session.
    pub totp_id: String,
    pub factors: Vec<Factor>,
    pub custom_claims: Map<String, Value>,
    pub started_at: i64,
    pub last_accessed_at: i64,
    pub expires_at: i64,
}

impl Session {
    /// The `https://stytch.com/session` claim object.
    pub fn claim(&self, roles: &[String]) -> Value {
        json!({
            "id": self.id,
            "started_at": rfc3339(self.started_at),
            "last_accessed_at": rfc3339(self.last_accessed_at),
            "expires_at": rfc3339(self.expires_at),
            "attributes": {"user_agent": "", "ip_address": ""},
            "authentication_factors": self.factors.iter().map(Factor::to_wire).collect::<Vec<_>>(),
            "roles": roles,
        })
    }

    /// The JWT claims: registered claims, the session claim, then the custom claims.
    pub fn jwt_claims(&self, project_id: &str, roles: &[String], now: i64) -> Value {
        let mut claims = Map::new();
        for (k, v) in &self.custom_claims {
            claims.insert(k.clone(), v.clone());
        }
        claims.insert("aud".into(), json!([project_id]));
        claims.insert("iss".into(), json!(format!("stytch.com/{project_id}")));
        claims.insert("sub".into(), json!(self.user_id));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + JWT_LIFETIME_SECS));
        claims.insert(SESSION_CLAIM.into(), self.claim(roles));
        Value::Object(claims)
    }
}

/// What a successful authenticate or recover does to sessions, committed in the same
/// transaction as the single-use write.
#[derive(Debug, Clone)]
pub enum SessionWrite {
    /// Start a new session.
    Create { session: Session, token_hash: Vec<u8> },
    /// Add the factor to a live session of this user, optionally extending it and merging claims.
    Attach {
        session_id: String,
        factor: Factor,
        expires_at: Option<i64>,
        custom_claims: Option<Map<String, Value>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_tokens_and_claims_are_checked() {
        assert!(duration_secs(4).is_err());
        assert_eq!(duration_secs(5).unwrap(), 300);
        assert!(duration_secs(527_041).is_err());
        let t = new_token().unwrap();
        assert_eq!(t.len(), 44);
        assert!(check_token_shape(&t).is_ok());
        assert!(check_token_shape("short").is_err());
        assert!(check_token_shape(&"a b".repeat(20)).is_err());
        assert_ne!(token_hash(&t), token_hash(&new_token().unwrap()));
        let claims = json!({"role": "admin", "sub": "evil", "exp": 1, SESSION_CLAIM: {}});
        let cleaned = clean_custom_claims(claims.as_object().unwrap().clone()).unwrap();
        assert_eq!(Value::Object(cleaned), json!({"role": "admin"}));
        let big = json!({"k": "x".repeat(5000)});
        assert!(matches!(
            clean_custom_claims(big.as_object().unwrap().clone()),
            Err(Error::CustomClaimsTooLarge)
        ));
    }

    #[test]
    fn jwt_claims_have_the_stytch_layout_and_reserved_claims_win() {
        let s = Session {
            id: "session-test-1".into(),
            user_id: "user-test-1".into(),
            totp_id: "totp-test-1".into(),
            factors: vec![Factor {
                kind: FactorKind::Totp,
                totp_id: "totp-test-1".into(),
                recovery_code_id: None,
                created_at: 0,
                last_authenticated_at: 0,
            }],
            custom_claims: json!({"plan": "pro", "iss": "evil"}).as_object().unwrap().clone(),
            started_at: 0,
            last_accessed_at: 0,
            expires_at: 3600,
        };
        let c = s.jwt_claims("project-test-1", &["stytch_user".into()], 100);
        assert_eq!(c["iss"], "stytch.com/project-test-1");
        assert_eq!(c["aud"], json!(["project-test-1"]));
        assert_eq!(c["exp"], 400);
        assert_eq!(c["plan"], "pro");
        let sc = &c[SESSION_CLAIM];
        assert_eq!(sc["id"], "session-test-1");
        assert_eq!(sc["authentication_factors"][0]["type"], "totp");
        assert_eq!(
            sc["authentication_factors"][0]["authenticator_app_factor"]["totp_id"],
            "totp-test-1"
        );
        assert_eq!(sc["roles"], json!(["stytch_user"]));
    }

    #[test]
    fn factors_merge_without_duplicates() {
        let f = |kind, at| Factor {
            kind,
            totp_id: "t".into(),
            recovery_code_id: None,
            created_at: 0,
            last_authenticated_at: at,
        };
        let mut v = vec![f(FactorKind::Totp, 1)];
        f(FactorKind::Totp, 5).merge_into(&mut v);
        f(FactorKind::RecoveryCode, 6).merge_into(&mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].last_authenticated_at, 5);
    }
}
