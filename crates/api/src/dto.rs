//! Wire types: what the SDKs send and what they need back, field by field (spec §2). Every
//! response carries `status_code` and `request_id`; strings the Python SDK requires are never
//! null (`""` stands for "none"), optional timestamps are RFC 3339 or null, never `""`.

use domain::clock::rfc3339;
use domain::model;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

// ---- shared objects ----

/// A user's name; unset parts are `""`.
#[derive(Debug, Serialize, Deserialize, ToSchema, Default)]
#[serde(try_from = "Map<String, Value>")]
pub struct Name {
    /// Given name; `""` when unset.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Middle name; `""` when unset.
    #[serde(default)]
    pub middle_name: Option<String>,
    /// Family name; `""` when unset.
    #[serde(default)]
    pub last_name: Option<String>,
}

/// Only a JSON object is a name (serde would otherwise take an array as a tuple).
impl TryFrom<Map<String, Value>> for Name {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        let part = |k: &str| -> Result<Option<String>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("`name.{k}` must be a string")),
            }
        };
        Ok(Name {
            first_name: part("first_name")?,
            middle_name: part("middle_name")?,
            last_name: part("last_name")?,
        })
    }
}

impl Name {
    pub(crate) fn into_domain(self) -> model::Name {
        model::Name {
            first_name: self.first_name,
            middle_name: self.middle_name,
            last_name: self.last_name,
        }
    }

    fn shown(n: &model::Name) -> Self {
        let s = |v: &Option<String>| Some(v.clone().unwrap_or_default());
        Name {
            first_name: s(&n.first_name),
            middle_name: s(&n.middle_name),
            last_name: s(&n.last_name),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Email {
    /// The email's id (`email-test-…`).
    #[schema(example = "email-test-81bf03a8-86e1-4d95-bd44-bb3495224953")]
    pub email_id: String,
    /// The email address, lower-cased.
    pub email: String,
    /// Whether this factor has been proven by the user.
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PhoneNumber {
    /// The phone number's id (`phone-number-test-…`).
    #[schema(example = "phone-number-test-d5a3b680-e8a3-40c0-b815-ab79986666d0")]
    pub phone_id: String,
    /// E.164.
    pub phone_number: String,
    /// Whether this factor has been proven by the user.
    pub verified: bool,
}

/// A TOTP as listed on the User.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserTotp {
    /// The TOTP's id (`totp-test-…`).
    #[schema(example = "totp-test-41920359-8bbb-4fe8-8fa3-aaa83f35f02c")]
    pub totp_id: String,
    /// True once the TOTP has been authenticated at least once.
    pub verified: bool,
}

/// Stytch's User object. Factor kinds Latch does not implement are always empty arrays.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// The user's id (`user-test-…`).
    #[schema(example = "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6")]
    pub user_id: String,
    /// The user's email addresses.
    pub emails: Vec<Email>,
    /// `active`, or `pending` until the first successful authentication.
    #[schema(example = "active")]
    pub status: String,
    /// The user's phone numbers.
    pub phone_numbers: Vec<PhoneNumber>,
    /// Always empty: Latch has no WebAuthn.
    pub webauthn_registrations: Vec<Value>,
    /// Always empty: Latch has no OAuth providers.
    pub providers: Vec<Value>,
    /// Usable TOTPs: verified ones and unexpired pending ones.
    pub totps: Vec<UserTotp>,
    /// Always empty: Latch has no crypto wallets.
    pub crypto_wallets: Vec<Value>,
    /// Always empty: Latch has no biometrics.
    pub biometric_registrations: Vec<Value>,
    /// True while the user is locked after too many consecutive failed attempts.
    pub is_locked: bool,
    /// Role ids; every user has `stytch_user`.
    pub roles: Vec<String>,
    /// The user's name.
    pub name: Name,
    /// RFC 3339 UTC.
    #[schema(example = "2021-12-29T12:33:09Z")]
    pub created_at: String,
    /// Metadata your backend sets (at most 20 top-level keys, 4 KB).
    pub trusted_metadata: Map<String, Value>,
    /// Metadata a client may set (at most 20 top-level keys, 4 KB).
    pub untrusted_metadata: Map<String, Value>,
    /// Present only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When the current lock started; null when not locked.
    pub lock_created_at: Option<String>,
    /// When the current lock ends; null when not locked.
    pub lock_expires_at: Option<String>,
}

impl From<&model::User> for User {
    fn from(u: &model::User) -> Self {
        User {
            user_id: u.id.clone(),
            emails: u
                .emails
                .iter()
                .map(|e| Email {
                    email_id: e.id.clone(),
                    email: e.email.clone(),
                    verified: e.verified,
                })
                .collect(),
            status: u.status.as_str().to_owned(),
            phone_numbers: u
                .phone_numbers
                .iter()
                .map(|p| PhoneNumber {
                    phone_id: p.id.clone(),
                    phone_number: p.phone_number.clone(),
                    verified: p.verified,
                })
                .collect(),
            webauthn_registrations: vec![],
            providers: vec![],
            totps: u
                .totps
                .iter()
                .map(|t| UserTotp {
                    totp_id: t.id.clone(),
                    verified: t.verified,
                })
                .collect(),
            crypto_wallets: vec![],
            biometric_registrations: vec![],
            is_locked: u.lock.is_some(),
            roles: u.roles.clone(),
            name: Name::shown(&u.name),
            created_at: rfc3339(u.created_at),
            trusted_metadata: u.trusted_metadata.clone(),
            untrusted_metadata: u.untrusted_metadata.clone(),
            external_id: u.external_id.clone(),
            lock_created_at: u.lock.map(|l| rfc3339(l.created_at)),
            lock_expires_at: u.lock.map(|l| rfc3339(l.expires_at)),
        }
    }
}

// ---- users ----

/// Body of `POST /v1/users`. An email or a phone number is required.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    /// The email address; it is stored lower-cased.
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        max_length = 254,
        example = "sandbox@stytch.com"
    )]
    pub email: Option<String>,
    /// E.164, e.g. `+15555550100`.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+15555550100")]
    pub phone_number: Option<String>,
    /// The user's name.
    pub name: Option<Name>,
    /// Fraud hints; accepted and ignored.
    pub attributes: Option<Value>,
    /// Keep the user `pending` until its first successful authentication.
    pub create_user_as_pending: Option<bool>,
    /// At most 20 top-level keys and 4 KB.
    pub trusted_metadata: Option<Map<String, Value>>,
    /// Metadata a client may set (at most 20 top-level keys, 4 KB).
    pub untrusted_metadata: Option<Map<String, Value>>,
    /// Your own id for the user: 1–128 of `A-Z a-z 0-9 . _ - |`, unique in the project, not
    /// starting with `user-test-` or `user-live-`.
    #[schema(pattern = r"^[A-Za-z0-9._|-]{1,128}$")]
    pub external_id: Option<String>,
    /// Role ids; every user has `stytch_user`.
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateUserResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// `""` when the user has no email.
    pub email_id: String,
    /// `""` when the user has no phone number.
    pub phone_id: String,
    /// `active`, or `pending` until the first successful authentication.
    pub status: String,
    /// The user, as it is after this request.
    pub user: User,
}

/// `GET /v1/users/{user_id}`: the User's fields at the top level.
#[derive(Debug, Serialize, ToSchema)]
pub struct GetUserResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user, as it is after this request.
    #[serde(flatten)]
    pub user: User,
}

/// Body of `PUT /v1/users/{user_id}`; absent or null fields are left as they are. Metadata
/// merges at the top level, and a top-level `null` deletes that key.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    /// The user's name.
    pub name: Option<Name>,
    /// Fraud hints; accepted and ignored.
    pub attributes: Option<Value>,
    /// Metadata your backend sets (at most 20 top-level keys, 4 KB).
    pub trusted_metadata: Option<Map<String, Value>>,
    /// Metadata a client may set (at most 20 top-level keys, 4 KB).
    pub untrusted_metadata: Option<Map<String, Value>>,
    /// Your own id for the user (1–128 of `A-Z a-z 0-9 . _ - |`), unique in the project.
    #[schema(pattern = r"^[A-Za-z0-9._|-]{1,128}$")]
    pub external_id: Option<String>,
    /// Role ids; every user has `stytch_user`.
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateUserResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The user's email addresses.
    pub emails: Vec<Email>,
    /// The user's phone numbers.
    pub phone_numbers: Vec<PhoneNumber>,
    /// Always empty: Latch has no crypto wallets.
    pub crypto_wallets: Vec<Value>,
    /// The user, as it is after this request.
    pub user: User,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteUserResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteTotpResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The user, as it is after this request.
    pub user: User,
}

// ---- TOTP ----

/// Body of `POST /v1/totps`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTotpRequest {
    /// The user id or its external id.
    #[schema(
        pattern = r"^[A-Za-z0-9._|-]{1,128}$",
        example = "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"
    )]
    pub user_id: String,
    /// Minutes the TOTP stays usable if never authenticated: 5–1440, default 1440.
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 1440)]
    pub expiration_minutes: Option<serde_json::Number>,
}

/// (No `Debug`: it holds the secret and the recovery codes.)
#[derive(Serialize, ToSchema)]
pub struct CreateTotpResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The TOTP's id (`totp-test-…`).
    pub totp_id: String,
    /// Base32, 32 characters (20 bytes).
    #[schema(example = "BTGNX5RKJRMQWQFRQKTG34JCF6XDRHZS")]
    pub secret: String,
    /// `data:image/png;base64,…` of the otpauth URI.
    pub qr_code: String,
    /// Ten single-use codes, `xxxx-xxxx-xxxx`.
    pub recovery_codes: Vec<String>,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The user, as it is after this request.
    pub user: User,
}

/// Body of `POST /v1/totps/authenticate`. (No `Debug`: it holds a code.)
#[derive(Deserialize, ToSchema)]
pub struct AuthenticateTotpRequest {
    /// The user id or its external id.
    #[schema(
        pattern = r"^[A-Za-z0-9._|-]{1,128}$",
        example = "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"
    )]
    pub user_id: String,
    /// Exactly 6 ASCII digits.
    #[schema(pattern = r"^[0-9]{6}$", example = "576831")]
    pub totp_code: String,
    /// Add this factor to the live session with this token.
    #[schema(pattern = r"^[A-Za-z0-9_=-]{20,200}$")]
    pub session_token: Option<String>,
    /// Add this factor to the live session this JWT belongs to (it may have expired).
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")]
    pub session_jwt: Option<String>,
    /// Start a session of this many minutes (5–527040), or extend the named one.
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 527040)]
    pub session_duration_minutes: Option<serde_json::Number>,
    /// Extra JWT claims (≤ 4 KB; reserved claims are ignored; `null` deletes a claim).
    pub session_custom_claims: Option<Map<String, Value>>,
    /// Accepted and ignored.
    pub telemetry_id: Option<String>,
}

/// Body of `POST /v1/totps/recover`. (No `Debug`: it holds a code.)
#[derive(Deserialize, ToSchema)]
pub struct RecoverTotpRequest {
    /// The user id or its external id.
    #[schema(
        pattern = r"^[A-Za-z0-9._|-]{1,128}$",
        example = "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"
    )]
    pub user_id: String,
    /// One of the user's unused recovery codes; case and hyphens do not matter.
    #[schema(
        pattern = r"^[A-Za-z0-9]{4}-?[A-Za-z0-9]{4}-?[A-Za-z0-9]{4}$",
        example = "ckss-2skx-ebow"
    )]
    pub recovery_code: String,
    /// A session token.
    #[schema(pattern = r"^[A-Za-z0-9_=-]{20,200}$")]
    pub session_token: Option<String>,
    /// A session JWT.
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")]
    pub session_jwt: Option<String>,
    /// Session length in minutes, 5–527040.
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 527040)]
    pub session_duration_minutes: Option<serde_json::Number>,
    /// Extra JWT claims (≤ 4 KB; reserved claims ignored; `null` deletes a claim).
    pub session_custom_claims: Option<Map<String, Value>>,
    /// Accepted and ignored.
    pub telemetry_id: Option<String>,
}

/// The answer of authenticate and recover. (No `Debug`: it holds a session token.)
#[derive(Serialize, ToSchema)]
pub struct AuthenticateTotpResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The TOTP's id (`totp-test-…`).
    pub totp_id: String,
    /// The session token; `""` when no session was asked for, or when the session was named by
    /// a JWT (only the token's hash is stored, so it cannot be returned).
    pub session_token: String,
    /// A fresh five-minute RS256 JWT of the session; `""` when no session was asked for.
    pub session_jwt: String,
    /// The user, as it is after this request.
    pub user: User,
    /// Null when no session was asked for.
    pub session: Option<Session>,
}

/// Body of `POST /v1/totps/recovery_codes`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoveryCodesRequest {
    /// The user id or its external id.
    #[schema(
        pattern = r"^[A-Za-z0-9._|-]{1,128}$",
        example = "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"
    )]
    pub user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpRecoveryCodes {
    /// The TOTP's id (`totp-test-…`).
    pub totp_id: String,
    /// Whether this factor has been proven by the user.
    pub verified: bool,
    /// The unused codes.
    pub recovery_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "status_code": 200,
    "request_id": "request-id-test-b05c992f-ebdc-489d-a754-c7e70ba13141",
    "user_id": "user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6",
    "totps": [{
        "totp_id": "totp-test-41920359-8bbb-4fe8-8fa3-aaa83f35f02c",
        "verified": true,
        "recovery_codes": ["ckss-2skx-ebow", "spbc-424h-usy0", "hi08-n5tk-lns5", "1n6i-l5na-8axe",
            "aduj-eufq-w6yy", "i4l3-dxyt-urmx", "ayyi-utb0-gj0s", "lz0m-02bi-psbx", "l2qm-zrk1-8ujs",
            "c2qd-k7m4-ifmc"]
    }]
}))]
pub struct RecoveryCodesResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The user's usable TOTPs with their unused recovery codes.
    pub totps: Vec<TotpRecoveryCodes>,
}

// ---- sessions ----

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthenticatorAppFactor {
    /// The TOTP's id (`totp-test-…`).
    pub totp_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodeFactor {
    /// The spent recovery code's id (`totp-recovery-code-test-…`).
    pub totp_recovery_code_id: String,
}

/// One factor that authenticated a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthenticationFactor {
    /// `totp` or `recovery_codes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `authenticator_app` or `recovery_code`.
    pub delivery_method: String,
    /// When this factor last authenticated the session (RFC 3339).
    pub last_authenticated_at: String,
    /// When this factor was first added (RFC 3339).
    pub created_at: String,
    /// When this factor was last updated (RFC 3339).
    pub updated_at: String,
    /// Set for `totp` factors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticator_app_factor: Option<AuthenticatorAppFactor>,
    /// Set for `recovery_codes` factors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_code_factor: Option<RecoveryCodeFactor>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAttributes {
    /// Client IP hint; always `""`.
    pub ip_address: String,
    /// Client user agent hint; always `""`.
    pub user_agent: String,
}

/// Stytch's Session object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// The session's id (`session-test-…`).
    #[schema(example = "session-test-fe6c042b-6286-479f-8a4f-b046a6c46509")]
    pub session_id: String,
    /// The user's id (`user-test-…`).
    pub user_id: String,
    /// The factors that authenticated this session.
    pub authentication_factors: Vec<AuthenticationFactor>,
    /// Role ids; every user has `stytch_user`.
    pub roles: Vec<String>,
    /// When the session started (RFC 3339).
    pub started_at: String,
    /// When the session was last used (RFC 3339).
    pub last_accessed_at: String,
    /// When the session ends unless extended (RFC 3339).
    pub expires_at: String,
    /// Fraud hints; accepted and ignored.
    pub attributes: SessionAttributes,
    /// The session's custom claims, added to its JWTs.
    pub custom_claims: Map<String, Value>,
}

impl Session {
    pub(crate) fn new(s: &domain::session::Session, roles: &[String]) -> Self {
        use domain::session::FactorKind;
        Session {
            session_id: s.id.clone(),
            user_id: s.user_id.clone(),
            authentication_factors: s
                .factors
                .iter()
                .map(|f| AuthenticationFactor {
                    kind: match f.kind {
                        FactorKind::Totp => "totp",
                        FactorKind::RecoveryCode => "recovery_codes",
                    }
                    .into(),
                    delivery_method: match f.kind {
                        FactorKind::Totp => "authenticator_app",
                        FactorKind::RecoveryCode => "recovery_code",
                    }
                    .into(),
                    last_authenticated_at: rfc3339(f.last_authenticated_at),
                    created_at: rfc3339(f.created_at),
                    updated_at: rfc3339(f.last_authenticated_at),
                    authenticator_app_factor: (f.kind == FactorKind::Totp).then(|| AuthenticatorAppFactor {
                        totp_id: f.totp_id.clone(),
                    }),
                    recovery_code_factor: (f.kind == FactorKind::RecoveryCode).then(|| RecoveryCodeFactor {
                        totp_recovery_code_id: f.recovery_code_id.clone().unwrap_or_default(),
                    }),
                })
                .collect(),
            roles: roles.to_vec(),
            started_at: rfc3339(s.started_at),
            last_accessed_at: rfc3339(s.last_accessed_at),
            expires_at: rfc3339(s.expires_at),
            attributes: SessionAttributes {
                ip_address: String::new(),
                user_agent: String::new(),
            },
            custom_claims: s.custom_claims.clone(),
        }
    }
}

/// Body of `POST /v1/sessions/authenticate`: exactly one of `session_token`, `session_jwt`.
#[derive(Deserialize, ToSchema)]
pub struct AuthenticateSessionRequest {
    /// A session token.
    #[schema(pattern = r"^[A-Za-z0-9_=-]{20,200}$")]
    pub session_token: Option<String>,
    /// A session JWT.
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")]
    pub session_jwt: Option<String>,
    /// Extend the session to this many minutes from now (5–527040).
    #[schema(value_type = Option<i64>, minimum = 5, maximum = 527040)]
    pub session_duration_minutes: Option<serde_json::Number>,
    /// Extra JWT claims (≤ 4 KB; reserved claims ignored; `null` deletes a claim).
    pub session_custom_claims: Option<Map<String, Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct AuthenticateSessionResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The session.
    pub session: Session,
    /// The token that was sent; `""` when the session was named by a JWT.
    pub session_token: String,
    /// A fresh five-minute JWT.
    pub session_jwt: String,
    /// The user, as it is after this request.
    pub user: User,
}

/// Query of `GET /v1/sessions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    /// A user id or external id.
    #[param(pattern = r"^[A-Za-z0-9._|-]{1,128}$")]
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The live sessions, newest first.
    pub sessions: Vec<Session>,
}

/// Body of `POST /v1/sessions/revoke`: exactly one of the three.
#[derive(Deserialize, ToSchema)]
pub struct RevokeSessionRequest {
    /// The session's id (`session-test-…`).
    pub session_id: Option<String>,
    /// A session token.
    #[schema(pattern = r"^[A-Za-z0-9_=-]{20,200}$")]
    pub session_token: Option<String>,
    /// A session JWT.
    #[schema(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")]
    pub session_jwt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeSessionResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
}

/// A public RS256 key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    /// Key type: `RSA`.
    #[schema(example = "RSA")]
    pub kty: String,
    /// Key use: `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: String,
    /// Key operations: `["verify"]`.
    pub key_ops: Vec<String>,
    /// Algorithm: `RS256`.
    #[schema(example = "RS256")]
    pub alg: String,
    /// Key id, as in the JWT header (`jwk-test-…`).
    #[schema(example = "jwk-test-22f1bbd6-2b9c-4a9b-8fbb-2c4c9c2a4a8e")]
    pub kid: String,
    /// Always empty.
    pub x5c: Vec<String>,
    /// Always `""`.
    #[serde(rename = "x5tS256")]
    pub x5t_s256: String,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JwksResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// The current key and the previous one.
    pub keys: Vec<Jwk>,
}

// ---- users search ----

/// One search condition.
#[derive(Deserialize, ToSchema)]
pub struct SearchOperand {
    /// One of `created_at_greater_than`, `created_at_less_than`, `created_at_between`, `status`,
    /// `user_id`, `full_name_fuzzy`, `email_address`, `email_address_fuzzy`, `email_id`,
    /// `email_verified`, `phone_number`, `phone_number_fuzzy`, `phone_id`, `phone_verified`,
    /// `totp_id`, `totp_verified`.
    #[schema(example = "totp_verified")]
    pub filter_name: String,
    /// A string, a boolean, an array of strings, or `{greater_than, less_than}` (RFC 3339),
    /// depending on the filter.
    #[schema(example = true)]
    pub filter_value: Value,
}

/// A search query; no query (or no operands) matches every user.
#[derive(Deserialize, ToSchema)]
pub struct SearchQuery {
    /// `AND` (default) or `OR`.
    #[schema(example = "AND")]
    pub operator: Option<String>,
    /// The conditions; none matches every user.
    pub operands: Option<Vec<SearchOperand>>,
}

/// Body of `POST /v1/users/search`.
#[derive(Deserialize, ToSchema)]
pub struct SearchUsersRequest {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<serde_json::Number>,
    /// The search query; absent matches every user.
    #[schema(value_type = Option<SearchQuery>)]
    pub query: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsMetadata {
    /// How many users match, over all pages.
    pub total: u64,
    /// The cursor of the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchUsersResponse {
    /// The HTTP status, repeated in the body.
    pub status_code: u16,
    /// This request's id, also in `X-Request-Id` and on every log line of it.
    pub request_id: String,
    /// This page of users.
    pub results: Vec<User>,
    /// The total and the cursor of the next page.
    pub results_metadata: ResultsMetadata,
}
