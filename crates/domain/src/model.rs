//! The records services work with: projects, users and their factors, and what the storage port
//! takes and returns. Plain data; rendering to Stytch's JSON is the `api` crate's job.

use crate::crypto::Sealed;
use crate::ids::Environment;
use serde_json::{Map, Value};

/// A tenant: its rows are visible only to requests authenticated as it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub env: Environment,
    /// Shown as the issuer in authenticator apps.
    pub name: String,
}

/// A project as the admin commands list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    pub project: Project,
    pub created_at: i64,
    /// Ids and creation times of the secrets that still work, oldest first.
    pub active_secrets: Vec<(String, i64)>,
}

/// What a retention pass removed, or would remove (`latch purge --dry-run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Pending TOTPs past their expiry (never authenticated, so never usable again).
    pub pending_totps: u64,
    /// The recovery codes of those TOTPs.
    pub recovery_codes: u64,
    /// Sessions that expired or were revoked before the retention cut-off.
    pub sessions: u64,
}

/// The three kinds of sealed values `latch keys rotate` moves to the active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedKind {
    TotpSecret,
    RecoveryCode,
    SigningKey,
}

impl SealedKind {
    /// The name `keys status` and `keys rotate` report it under.
    pub fn as_str(self) -> &'static str {
        match self {
            SealedKind::TotpSecret => "totp_secrets",
            SealedKind::RecoveryCode => "recovery_codes",
            SealedKind::SigningKey => "signing_keys",
        }
    }
}

/// One sealed value not (wholly) under the active key: its row id (also its associated data),
/// and for a recovery code the key of its HMAC index.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: String,
    pub sealed: crate::crypto::Sealed,
    pub index_key_id: Option<String>,
}

/// What revoking a project secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRevocation {
    Revoked,
    /// No active secret of that id in that project.
    NotFound,
    /// Refused: it is the project's last working secret.
    LastSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Pending,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "pending" => Some(UserStatus::Pending),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub id: String,
    pub email: String,
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    pub id: String,
    pub phone_number: String,
    pub verified: bool,
}

/// A TOTP as the User object lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSummary {
    pub id: String,
    pub verified: bool,
}

/// A user with everything the User object shows.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub external_id: Option<String>,
    pub status: UserStatus,
    pub name: Name,
    pub emails: Vec<Email>,
    pub phone_numbers: Vec<PhoneNumber>,
    /// Only TOTPs that can still be used: verified ones and unexpired pending ones.
    pub totps: Vec<TotpSummary>,
    pub trusted_metadata: Map<String, Value>,
    pub untrusted_metadata: Map<String, Value>,
    pub roles: Vec<String>,
    pub created_at: i64,
    /// Set only while the lock is in force (see [`User::settle`]).
    pub lock: Option<Lock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub created_at: i64,
    pub expires_at: i64,
}

impl User {
    /// Drops a lock that has expired by `now`, so the User object shows the lock state at the
    /// time of the request.
    pub fn settle(mut self, now: i64) -> Self {
        if self.lock.is_some_and(|l| l.expires_at <= now) {
            self.lock = None;
        }
        self
    }
}

/// What the storage port needs to insert a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub external_id: Option<String>,
    pub status: UserStatus,
    pub name: Name,
    pub email: Option<Email>,
    pub phone_number: Option<PhoneNumber>,
    pub trusted_metadata: Map<String, Value>,
    pub untrusted_metadata: Map<String, Value>,
    pub roles: Vec<String>,
    pub created_at: i64,
}

/// A partial update; `None` leaves a field as it is. Metadata patches merge at the top level
/// (a `null` value deletes the key) inside the store's transaction, so concurrent updates of
/// different keys are not lost.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<Name>,
    pub external_id: Option<String>,
    pub trusted_metadata: Option<Map<String, Value>>,
    pub untrusted_metadata: Option<Map<String, Value>>,
    pub roles: Option<Vec<String>>,
}

/// A TOTP row as stored.
#[derive(Debug, Clone)]
pub struct StoredTotp {
    pub id: String,
    pub user_id: String,
    pub verified: bool,
    pub secret: Sealed,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRecoveryCode {
    pub id: String,
    pub index_key_id: String,
    pub index: Vec<u8>,
    pub sealed: Sealed,
}

#[derive(Debug, Clone)]
pub struct NewTotp {
    pub id: String,
    pub user_id: String,
    pub secret: Sealed,
    pub expires_at: i64,
    pub created_at: i64,
    pub recovery_codes: Vec<NewRecoveryCode>,
}

/// An unused recovery code as stored.
#[derive(Debug, Clone)]
pub struct StoredRecoveryCode {
    pub id: String,
    pub totp_id: String,
    pub sealed: Sealed,
}

/// A recovery code found by its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecoveryCode {
    pub id: String,
    pub totp_id: String,
    pub totp_verified: bool,
    pub used: bool,
}

/// Lock policy handed to the store's failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub max_failures: u32,
    pub lock_secs: i64,
}

/// A project's RS256 signing key as stored: the public half in the clear, the private half
/// sealed under the key ring (its kid as associated data).
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub public: crate::jwt::PublicJwk,
    pub private: Sealed,
    pub created_at: i64,
}

/// How a session is looked up.
#[derive(Debug, Clone)]
pub enum SessionLookup {
    Id(String),
    TokenHash(Vec<u8>),
}

/// What counting a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; the user is not locked.
    Counted,
    /// This failure reached the limit and set the lock, until the given time.
    LockedNow(i64),
    /// The user was already locked (by a concurrent failure); nothing was counted.
    AlreadyLocked(i64),
}
