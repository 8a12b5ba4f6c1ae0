//! The storage port. Every method is scoped by project, and every single-use state change is one
//! conditional write inside the store (architecture §4): the port offers atomic operations,
//! never a read the caller would then write back.

use crate::Error;
use crate::ids::UserRef;
use crate::model::*;
use crate::session::{Session, SessionWrite};
use serde_json::{Map, Value};
use std::any::Any;

/// A unit of CPU-heavy work for [`Offload`], its result type-erased.
pub type Job = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// Where the service runs work too slow for an async worker: RS256 signing (about 1 ms) and
/// RSA key generation (tens to hundreds of ms). The server hands it to tokio's blocking pool.
/// The fast crypto (AES-GCM, HMAC, SHA-256, TOTP: microseconds) stays inline (issue 8).
#[async_trait::async_trait]
pub trait Offload: Send + Sync {
    async fn run(&self, job: Job) -> Result<Box<dyn Any + Send>, Error>;
}

/// Runs the job where it is called: the default, for tests and one-shot commands.
pub struct Inline;

#[async_trait::async_trait]
impl Offload for Inline {
    async fn run(&self, job: Job) -> Result<Box<dyn Any + Send>, Error> {
        Ok(job())
    }
}

/// What [`Store::load_user`] reads with the user, in the same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum With<'a> {
    /// The user alone.
    Nothing,
    /// The usable TOTPs' sealed secrets ([`Loaded::totps`]).
    TotpSecrets,
    /// The unused recovery codes of the usable TOTPs ([`Loaded::codes`]). The user comes with
    /// its TOTPs only: its emails and phone numbers are not read (`recovery_codes` does not
    /// answer with them).
    UnusedCodes,
    /// The user's recovery code, used or not, whose index is one of these ([`Loaded::found`]).
    CodeByIndex(&'a [Vec<u8>]),
}

/// A user and what was loaded with it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub user: User,
    /// With [`With::TotpSecrets`]: the usable TOTPs, verified first, then newest first.
    pub totps: Vec<StoredTotp>,
    /// With [`With::UnusedCodes`]: unused codes of the usable TOTPs, in their original order.
    pub codes: Vec<StoredRecoveryCode>,
    /// With [`With::CodeByIndex`]: the code found, if any.
    pub found: Option<FoundRecoveryCode>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// A project and the SHA-256 hashes of its active secrets.
    async fn project_auth(&self, project_id: &str) -> Result<Option<(Project, Vec<Vec<u8>>)>, Error>;
    async fn insert_project(
        &self,
        project: &Project,
        secret_id: &str,
        secret_hash: &[u8],
        now: i64,
    ) -> Result<(), Error>;
    async fn count_projects(&self) -> Result<u64, Error>;
    /// Up to `limit` values of `kind` sealed (or, for recovery codes, indexed) under a key other
    /// than `active`.
    async fn sealed_batch(&self, kind: SealedKind, active: &str, limit: u64)
    -> Result<Vec<SealedRow>, Error>;
    /// Replaces one sealed value (and a recovery code's index) if it is still sealed under
    /// `old_key_id`: a conditional write, so a concurrent change is never overwritten.
    async fn reseal(
        &self,
        kind: SealedKind,
        id: &str,
        old_key_id: &str,
        new: &crate::crypto::Sealed,
        index: Option<(&str, &[u8])>,
    ) -> Result<bool, Error>;
    /// Removes (or with `dry_run` counts) expired pending TOTPs and their codes, and sessions
    /// that expired or were revoked at or before `sessions_before`; nothing else.
    async fn purge(&self, now: i64, sessions_before: i64, dry_run: bool) -> Result<PurgeCounts, Error>;
    async fn list_projects(&self) -> Result<Vec<ProjectInfo>, Error>;
    async fn rename_project(&self, project_id: &str, name: &str) -> Result<bool, Error>;
    /// Removes the project and every row that belongs to it, in one transaction.
    async fn delete_project(&self, project_id: &str) -> Result<bool, Error>;
    async fn insert_secret(
        &self,
        project_id: &str,
        secret_id: &str,
        hash: &[u8],
        now: i64,
    ) -> Result<(), Error>;
    /// Revokes one active secret, never the project's last one.
    async fn revoke_secret(
        &self,
        project_id: &str,
        secret_id: &str,
        now: i64,
    ) -> Result<SecretRevocation, Error>;

    /// Inserts a user; unique violations become `DuplicateEmail` and friends.
    async fn insert_user(&self, project_id: &str, user: &NewUser) -> Result<(), Error>;
    /// Finds a user by id or external id, with TOTPs visible at `now`, and what `with` asks
    /// for, in one round trip.
    async fn load_user(
        &self,
        project_id: &str,
        user: &UserRef,
        now: i64,
        with: With<'_>,
    ) -> Result<Option<Loaded>, Error>;
    /// Finds a user by id or external id, with TOTPs visible at `now`.
    async fn find_user(&self, project_id: &str, user: &UserRef, now: i64) -> Result<Option<User>, Error> {
        Ok(self
            .load_user(project_id, user, now, With::Nothing)
            .await?
            .map(|l| l.user))
    }
    /// One page of a search, ordered by (created_at, id), and the number of all matches.
    async fn search_users(
        &self,
        project_id: &str,
        search: &crate::search::Search,
        now: i64,
    ) -> Result<(Vec<User>, u64), Error>;
    /// Applies a patch in one transaction; `UserNotFound` if the user is gone.
    async fn update_user(
        &self,
        project_id: &str,
        user_id: &str,
        patch: &UserPatch,
        now: i64,
    ) -> Result<(), Error>;
    /// Deletes a user and everything that hangs off it; false if there was none.
    async fn delete_user(&self, project_id: &str, user_id: &str) -> Result<bool, Error>;
    /// Clears the user's lock and consecutive-failure counter; false if there is no such user.
    async fn unlock_user(&self, project_id: &str, user_id: &str) -> Result<bool, Error>;
    /// Counts one failed attempt in one conditional write (never on a locked user).
    async fn record_failure(
        &self,
        project_id: &str,
        user_id: &str,
        now: i64,
        policy: LockPolicy,
    ) -> Result<FailureOutcome, Error>;

    /// Inserts a TOTP with its recovery codes, replacing any pending one; `ActiveTotpExists`
    /// if the user has a verified TOTP.
    async fn insert_totp(&self, project_id: &str, totp: &NewTotp, now: i64) -> Result<(), Error>;
    /// Accepts `step` for a TOTP with a compare-and-set on its last used step; on success also
    /// marks it verified, resets the failure counter and activates a pending user, all in one
    /// transaction. False when the step (or a later one) was already accepted; `UserLocked` if
    /// the user is locked at commit time; `TotpsNotFoundForUser` if the TOTP went away.
    /// `session` is applied in the same transaction; if it names a session that is not live
    /// (or not this user's) everything rolls back with `SessionNotFound`.
    async fn accept_totp_step(
        &self,
        project_id: &str,
        user_id: &str,
        totp_id: &str,
        step: i64,
        now: i64,
        session: Option<&SessionWrite>,
    ) -> Result<bool, Error>;
    /// Spends a recovery code with a conditional write (`used_at IS NULL`); on success also
    /// resets the failure counter and activates a pending user, in one transaction.
    async fn spend_recovery_code(
        &self,
        project_id: &str,
        user_id: &str,
        code_id: &str,
        now: i64,
        session: Option<&SessionWrite>,
    ) -> Result<bool, Error>;
    /// The project's signing keys, newest first.
    async fn signing_keys(&self, project_id: &str) -> Result<Vec<StoredSigningKey>, Error>;
    async fn insert_signing_key(&self, project_id: &str, key: &StoredSigningKey) -> Result<(), Error>;
    /// A live session (not revoked, not expired at `now`).
    async fn find_session(
        &self,
        project_id: &str,
        by: &SessionLookup,
        now: i64,
    ) -> Result<Option<Session>, Error>;
    /// The user's live sessions, newest first.
    async fn list_sessions(&self, project_id: &str, user_id: &str, now: i64) -> Result<Vec<Session>, Error>;
    /// Marks a live session accessed, optionally extending it and merging custom claims (a
    /// `null` deletes a claim); `None` if it is no longer live.
    async fn touch_session(
        &self,
        project_id: &str,
        session_id: &str,
        now: i64,
        expires_at: Option<i64>,
        custom_claims: Option<&Map<String, Value>>,
    ) -> Result<Option<Session>, Error>;
    /// Ends a live session; false if there was none.
    async fn revoke_session(&self, project_id: &str, session_id: &str, now: i64) -> Result<bool, Error>;
    /// Deletes a TOTP and its codes and ends the sessions it minted; returns the owner's id,
    /// or `None` if there was none.
    async fn delete_totp(&self, project_id: &str, totp_id: &str, now: i64) -> Result<Option<String>, Error>;
}
