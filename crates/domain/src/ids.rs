//! Identifiers: the `test`/`live` environment word, minting `<kind>-<env>-<uuid>` ids, and
//! parsing what clients send (spec §4 "ID / token formats", §5.12, §5.15).

use crate::Error;
use std::fmt;
use uuid::Uuid;

/// A project's environment; every id Latch mints carries its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Test,
    Live,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Test => "test",
            Environment::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Environment::Test),
            "live" => Some(Environment::Live),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of ids Latch mints, with their Stytch prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Project,
    User,
    Totp,
    RecoveryCode,
    Email,
    PhoneNumber,
    RequestId,
    Secret,
    Session,
    Jwk,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::User => "user",
            Kind::Totp => "totp",
            Kind::RecoveryCode => "totp-recovery-code",
            Kind::Email => "email",
            Kind::PhoneNumber => "phone-number",
            Kind::RequestId => "request-id",
            Kind::Secret => "project-secret",
            Kind::Session => "session",
            Kind::Jwk => "jwk",
        }
    }
}

/// Mints a new id: `<kind>-<env>-<lowercase hyphenated uuid v4>`.
pub fn mint(kind: Kind, env: Environment) -> String {
    format!("{}-{}-{}", kind.prefix(), env, Uuid::new_v4())
}

/// How an id string relates to a kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `<kind>-<env>-<canonical uuid>`.
    Id(Environment),
    /// Starts with `<kind>-test-` or `<kind>-live-` but no canonical uuid follows.
    Malformed,
    /// Does not start with this kind's prefix at all.
    Other,
}

/// Classifies `s` as an id of `kind`. Only the canonical lowercase hyphenated uuid form is
/// accepted, so one id has one spelling (and one row).
pub fn classify(kind: Kind, s: &str) -> Parsed {
    for env in [Environment::Test, Environment::Live] {
        let Some(rest) = s
            .strip_prefix(kind.prefix())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_prefix(env.as_str()))
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        return match Uuid::try_parse(rest) {
            Ok(u) if u.hyphenated().to_string() == rest => Parsed::Id(env),
            _ => Parsed::Malformed,
        };
    }
    Parsed::Other
}

/// Checks that an id of the right shape belongs to the project's environment.
fn same_env(id_env: Environment, project_env: Environment) -> Result<(), Error> {
    if id_env == project_env {
        Ok(())
    } else {
        Err(Error::WrongEnvironment { id: id_env })
    }
}

/// What a client sent as `user_id`: a user id, or the user's external id (spec §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    External(String),
}

impl UserRef {
    /// Parses a `user_id` field or path segment for a project of `env` (spec §5.15).
    pub fn parse(s: &str, env: Environment) -> Result<Self, Error> {
        match classify(Kind::User, s) {
            Parsed::Id(id_env) => {
                same_env(id_env, env)?;
                Ok(UserRef::Id(s.to_owned()))
            }
            Parsed::Malformed => Err(Error::InvalidUserId),
            Parsed::Other if is_external_id_shape(s) => Ok(UserRef::External(s.to_owned())),
            Parsed::Other => Err(Error::InvalidUserId),
        }
    }
}

/// A TOTP id of this project's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpId(pub String);

impl TotpId {
    pub fn parse(s: &str, env: Environment) -> Result<Self, Error> {
        match classify(Kind::Totp, s) {
            Parsed::Id(id_env) => {
                same_env(id_env, env)?;
                Ok(TotpId(s.to_owned()))
            }
            Parsed::Malformed | Parsed::Other => Err(Error::InvalidTotpId),
        }
    }
}

fn is_external_id_shape(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'|'))
}

/// A validated external id: 1–128 of `[A-Za-z0-9._|-]`, never shaped like a user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(pub String);

impl ExternalId {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if !is_external_id_shape(s) || s.starts_with("user-test-") || s.starts_with("user-live-") {
            return Err(Error::InvalidExternalId);
        }
        Ok(ExternalId(s.to_owned()))
    }
}

/// The environment word of a project id, if it is one (`project-test-<uuid>`).
pub fn project_environment(project_id: &str) -> Option<Environment> {
    match classify(Kind::Project, project_id) {
        Parsed::Id(env) => Some(env),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::{Live, Test};

    #[test]
    fn minted_ids_classify_as_their_kind_and_environment() {
        for env in [Test, Live] {
            for kind in [Kind::User, Kind::Totp, Kind::RecoveryCode, Kind::Project] {
                let id = mint(kind, env);
                assert!(id.starts_with(&format!("{}-{}-", kind.prefix(), env)));
                assert_eq!(classify(kind, &id), Parsed::Id(env), "{id}");
            }
        }
    }

    #[test]
    fn user_ids_of_the_wrong_shape_or_environment_are_rejected() {
        let good = mint(Kind::User, Test);
        assert_eq!(UserRef::parse(&good, Test).unwrap(), UserRef::Id(good.clone()));
        let e = UserRef::parse(&good, Live).unwrap_err();
        assert_eq!(e.error_type(), "test_id_used_in_live_environment");
        for bad in [
            "user-test-",
            "user-test-123",
            "user-test-16D9BA61-97A1-4BA4-9720-B03761DC50C6",
            "user-live-not-a-uuid",
            "",
            "has space",
            "ünïcode",
            &"x".repeat(129),
        ] {
            assert_eq!(
                UserRef::parse(bad, Test).unwrap_err().error_type(),
                "invalid_user_id",
                "{bad}"
            );
        }
        assert_eq!(
            UserRef::parse("crm|42.a_b-c", Test).unwrap(),
            UserRef::External("crm|42.a_b-c".into())
        );
    }

    #[test]
    fn external_ids_cannot_impersonate_user_ids() {
        assert!(ExternalId::parse("user-test-abc").is_err());
        assert!(ExternalId::parse("a/b").is_err());
        assert!(ExternalId::parse("").is_err());
        assert!(ExternalId::parse(&"a".repeat(128)).is_ok());
        assert!(ExternalId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn totp_ids_parse_with_their_own_errors() {
        let id = mint(Kind::Totp, Live);
        assert!(TotpId::parse(&id, Live).is_ok());
        assert_eq!(
            TotpId::parse(&id, Test).unwrap_err().error_type(),
            "live_id_used_in_test_environment"
        );
        assert_eq!(
            TotpId::parse("totp-test-x", Test).unwrap_err().error_type(),
            "invalid_totp_id"
        );
        assert_eq!(
            TotpId::parse("nope", Test).unwrap_err().error_type(),
            "invalid_totp_id"
        );
    }
}
