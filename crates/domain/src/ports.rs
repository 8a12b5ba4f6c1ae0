//! The storage port. Every method is scoped by project, and every single-use state change is one
//! conditional write inside the store (architecture §4): the port offers atomic operations,
//! never a read the caller would then write back.

use crate::Error;
use crate::ids::UserRef;
use crate::model::*;

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

    /// Inserts a user; unique violations become `DuplicateEmail` and friends.
    async fn insert_user(&self, project_id: &str, user: &NewUser) -> Result<(), Error>;
    /// Finds a user by id or external id, with TOTPs visible at `now`.
    async fn find_user(&self, project_id: &str, user: &UserRef, now: i64) -> Result<Option<User>, Error>;
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
    /// Counts one failed attempt in one conditional write; returns the lock expiry when this
    /// failure set the lock.
    async fn record_failure(
        &self,
        project_id: &str,
        user_id: &str,
        now: i64,
        policy: LockPolicy,
    ) -> Result<Option<i64>, Error>;

    /// Inserts a TOTP with its recovery codes, replacing any pending one; `ActiveTotpExists`
    /// if the user has a verified TOTP.
    async fn insert_totp(&self, project_id: &str, totp: &NewTotp, now: i64) -> Result<(), Error>;
    /// The user's usable TOTPs (verified first, then unexpired pending), newest first.
    async fn usable_totps(&self, project_id: &str, user_id: &str, now: i64)
    -> Result<Vec<StoredTotp>, Error>;
    /// Accepts `step` for a TOTP with a compare-and-set on its last used step; on success also
    /// marks it verified, resets the failure counter and activates a pending user, all in one
    /// transaction. False when the step (or a later one) was already accepted.
    async fn accept_totp_step(
        &self,
        project_id: &str,
        user_id: &str,
        totp_id: &str,
        step: i64,
        now: i64,
    ) -> Result<bool, Error>;
    /// Unused recovery codes of the given TOTPs.
    async fn unused_recovery_codes(
        &self,
        project_id: &str,
        totp_ids: &[String],
    ) -> Result<Vec<StoredRecoveryCode>, Error>;
    /// Finds one of the user's recovery codes by any of the candidate index values.
    async fn find_recovery_code(
        &self,
        project_id: &str,
        user_id: &str,
        candidates: &[Vec<u8>],
    ) -> Result<Option<FoundRecoveryCode>, Error>;
    /// Spends a recovery code with a conditional write (`used_at IS NULL`); on success also
    /// resets the failure counter and activates a pending user, in one transaction.
    async fn spend_recovery_code(
        &self,
        project_id: &str,
        user_id: &str,
        code_id: &str,
        now: i64,
    ) -> Result<bool, Error>;
    /// Deletes a TOTP and its codes; returns the owner's id, or `None` if there was none.
    async fn delete_totp(&self, project_id: &str, totp_id: &str) -> Result<Option<String>, Error>;
}
