//! The services: what each Stytch route does, over the storage port, a key ring and a clock.

use crate::clock::Clock;
use crate::crypto::KeyRing;
use crate::ids::{self, Environment, ExternalId, Kind, TotpId, UserRef};
use crate::model::*;
use crate::ports::Store;
use crate::recovery::{self, RecoveryCode};
use crate::totp::{self, TotpCode, TotpParams, TotpSecret};
use crate::{Error, validate};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Tunables the services need, validated by the server at start.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub totp: TotpParams,
    pub lock: LockPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            totp: TotpParams::default(),
            lock: LockPolicy {
                max_failures: 10,
                lock_secs: 3600,
            },
        }
    }
}

/// The role every user has (spec §2.1 `roles`).
pub const DEFAULT_ROLE: &str = "stytch_user";

/// Input of `POST /v1/users`, as parsed from JSON but not yet validated.
#[derive(Debug, Clone, Default)]
pub struct CreateUser {
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub name: Name,
    pub create_user_as_pending: bool,
    pub trusted_metadata: Option<Map<String, Value>>,
    pub untrusted_metadata: Option<Map<String, Value>>,
    pub external_id: Option<String>,
    pub roles: Option<Vec<String>>,
}

/// Input of `PUT /v1/users/{id}`, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    pub name: Option<Name>,
    pub external_id: Option<String>,
    pub trusted_metadata: Option<Map<String, Value>>,
    pub untrusted_metadata: Option<Map<String, Value>>,
    pub roles: Option<Vec<String>>,
}

/// What `POST /v1/totps` returns.
#[derive(Debug)]
pub struct CreatedTotp {
    pub totp_id: String,
    pub secret: String,
    pub qr_code: String,
    pub recovery_codes: Vec<String>,
    pub user: User,
}

/// A successful authenticate or recover.
#[derive(Debug)]
pub struct Authenticated {
    pub user: User,
    pub totp_id: String,
    /// Set when a recovery code was spent.
    pub recovery_code_id: Option<String>,
}

/// A TOTP with its unused recovery codes.
#[derive(Debug)]
pub struct TotpCodes {
    pub totp_id: String,
    pub verified: bool,
    pub recovery_codes: Vec<String>,
}

/// A new project and its secret, shown once.
#[derive(Debug)]
pub struct NewProject {
    pub project: Project,
    pub secret: String,
}

/// The application's services.
pub struct Latch {
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    policy: Policy,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

impl Latch {
    pub fn new(store: Arc<dyn Store>, keys: Arc<KeyRing>, clock: Arc<dyn Clock>, policy: Policy) -> Self {
        Latch {
            store,
            keys,
            clock,
            policy,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    // ---- projects ----

    /// Creates a project and its first secret (`secret-<env>-` + 26 random bytes, base64url);
    /// only the secret's SHA-256 is stored (spec §5.12).
    pub async fn create_project(&self, name: &str, env: Environment) -> Result<NewProject, Error> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.contains(':') {
            return Err(Error::BadRequest(
                "a project name is 1 to 100 characters and has no ':' (it is the issuer in authenticator apps)"
                    .into(),
            ));
        }
        let project = Project {
            id: ids::mint(Kind::Project, env),
            env,
            name: name.to_owned(),
        };
        let secret = format!(
            "secret-{env}-{}",
            data_encoding::BASE64URL.encode(&crate::random::bytes::<26>()?)
        );
        let secret_id = ids::mint(Kind::Secret, env);
        self.store
            .insert_project(&project, &secret_id, &secret_hash(&secret), self.now())
            .await?;
        Ok(NewProject { project, secret })
    }

    pub async fn count_projects(&self) -> Result<u64, Error> {
        self.store.count_projects().await
    }

    /// Checks HTTP Basic credentials; every failure is the same `Unauthorized`.
    pub async fn authenticate_project(&self, project_id: &str, secret: &str) -> Result<Project, Error> {
        if ids::project_environment(project_id).is_none() {
            return Err(Error::Unauthorized);
        }
        let presented = secret_hash(secret);
        let Some((project, hashes)) = self.store.project_auth(project_id).await? else {
            return Err(Error::Unauthorized);
        };
        // Compare against every active secret without stopping at the first match.
        let mut ok = subtle::Choice::from(0);
        for h in &hashes {
            ok |= h.as_slice().ct_eq(presented.as_slice());
        }
        if bool::from(ok) {
            Ok(project)
        } else {
            Err(Error::Unauthorized)
        }
    }

    // ---- users ----

    async fn load_user(&self, p: &Project, user: &UserRef) -> Result<User, Error> {
        let now = self.now();
        self.store
            .find_user(&p.id, user, now)
            .await?
            .map(|u| u.settle(now))
            .ok_or(Error::UserNotFound)
    }

    async fn reload(&self, p: &Project, user_id: &str) -> Result<User, Error> {
        self.load_user(p, &UserRef::Id(user_id.to_owned())).await
    }

    pub async fn create_user(&self, p: &Project, input: CreateUser) -> Result<User, Error> {
        let now = self.now();
        let email = input.email.as_deref().map(validate::email).transpose()?;
        let phone = input
            .phone_number
            .as_deref()
            .map(validate::phone_number)
            .transpose()?;
        if email.is_none() && phone.is_none() {
            return Err(Error::InvalidCreateUserRequest);
        }
        let external_id = input.external_id.as_deref().map(ExternalId::parse).transpose()?;
        let trusted = input.trusted_metadata.unwrap_or_default();
        let untrusted = input.untrusted_metadata.unwrap_or_default();
        validate::metadata(&trusted)?;
        validate::metadata(&untrusted)?;
        let new = NewUser {
            id: ids::mint(Kind::User, p.env),
            external_id: external_id.map(|e| e.0),
            status: if input.create_user_as_pending {
                UserStatus::Pending
            } else {
                UserStatus::Active
            },
            name: input.name,
            email: email.map(|email| Email {
                id: ids::mint(Kind::Email, p.env),
                email,
                verified: false,
            }),
            phone_number: phone.map(|phone_number| PhoneNumber {
                id: ids::mint(Kind::PhoneNumber, p.env),
                phone_number,
                verified: false,
            }),
            trusted_metadata: trusted,
            untrusted_metadata: untrusted,
            roles: roles(input.roles),
            created_at: now,
        };
        self.store.insert_user(&p.id, &new).await?;
        self.reload(p, &new.id).await
    }

    pub async fn get_user(&self, p: &Project, user: &UserRef) -> Result<User, Error> {
        self.load_user(p, user).await
    }

    pub async fn update_user(&self, p: &Project, user: &UserRef, input: UpdateUser) -> Result<User, Error> {
        let existing = self.load_user(p, user).await?;
        let external_id = input.external_id.as_deref().map(ExternalId::parse).transpose()?;
        // Patches are checked on their own here; the merged result is checked in the store.
        for m in [&input.trusted_metadata, &input.untrusted_metadata]
            .into_iter()
            .flatten()
        {
            validate::metadata(m)?;
        }
        let patch = UserPatch {
            name: input.name,
            external_id: external_id.map(|e| e.0),
            trusted_metadata: input.trusted_metadata,
            untrusted_metadata: input.untrusted_metadata,
            roles: input.roles.map(|r| roles(Some(r))),
        };
        self.store
            .update_user(&p.id, &existing.id, &patch, self.now())
            .await?;
        self.reload(p, &existing.id).await
    }

    /// Deletes a user and returns its id.
    pub async fn delete_user(&self, p: &Project, user: &UserRef) -> Result<String, Error> {
        let existing = self.load_user(p, user).await?;
        if self.store.delete_user(&p.id, &existing.id).await? {
            Ok(existing.id)
        } else {
            Err(Error::UserNotFound)
        }
    }

    /// Deletes a TOTP; returns its owner as it is afterwards.
    pub async fn delete_totp(&self, p: &Project, totp_id: &TotpId) -> Result<User, Error> {
        let user_id = self
            .store
            .delete_totp(&p.id, &totp_id.0)
            .await?
            .ok_or(Error::TotpNotFound)?;
        self.reload(p, &user_id).await
    }

    // ---- TOTP ----

    /// `POST /v1/totps`: a new pending TOTP with ten recovery codes (spec §4, §5.2).
    pub async fn create_totp(
        &self,
        p: &Project,
        user: &UserRef,
        expiration_minutes: Option<i64>,
    ) -> Result<CreatedTotp, Error> {
        let minutes = expiration_minutes.unwrap_or(1440);
        if !(5..=1440).contains(&minutes) {
            return Err(Error::InvalidExpiration);
        }
        let owner = self.load_user(p, user).await?;
        if owner.totps.iter().any(|t| t.verified) {
            return Err(Error::ActiveTotpExists);
        }
        let now = self.now();
        let totp_id = ids::mint(Kind::Totp, p.env);
        let secret = TotpSecret::generate()?;
        let mut codes = Vec::with_capacity(recovery::COUNT);
        let mut shown = Vec::with_capacity(recovery::COUNT);
        for _ in 0..recovery::COUNT {
            let code = RecoveryCode::generate()?;
            let id = ids::mint(Kind::RecoveryCode, p.env);
            let (index_key_id, index) = self.keys.index(code.normalised())?;
            let sealed = self.keys.seal(code.normalised().as_bytes(), &id)?;
            codes.push(NewRecoveryCode {
                id,
                index_key_id,
                index,
                sealed,
            });
            shown.push(code.display());
        }
        let new = NewTotp {
            id: totp_id.clone(),
            user_id: owner.id.clone(),
            secret: self.keys.seal(secret.as_bytes(), &totp_id)?,
            expires_at: now + minutes * 60,
            created_at: now,
            recovery_codes: codes,
        };
        self.store.insert_totp(&p.id, &new, now).await?;
        let account = owner
            .emails
            .first()
            .map(|e| e.email.clone())
            .or_else(|| owner.phone_numbers.first().map(|ph| ph.phone_number.clone()))
            .unwrap_or_else(|| owner.id.clone());
        let uri = totp::otpauth_uri(&secret, &p.name, &account, self.policy.totp.period_secs);
        Ok(CreatedTotp {
            totp_id,
            secret: secret.to_base32(),
            qr_code: totp::qr_data_url(&uri)?,
            recovery_codes: shown,
            user: self.reload(p, &owner.id).await?,
        })
    }

    /// Refuses while the user is locked (spec §5.7, §5.16), even before looking at the code.
    fn check_lock(&self, user: &User) -> Result<(), Error> {
        match user.lock {
            Some(l) => Err(Error::UserLocked {
                retry_after_secs: u64::try_from(l.expires_at - self.now()).unwrap_or(0).max(1),
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt in the database, then returns the error the client gets.
    async fn fail(&self, p: &Project, user: &User, e: Error) -> Error {
        match self
            .store
            .record_failure(&p.id, &user.id, self.now(), self.policy.lock)
            .await
        {
            Ok(Some(until)) => {
                tracing::warn!(user_id = %user.id, lock_expires_at = until, "user locked after consecutive failed attempts");
                e
            }
            Ok(None) => e,
            Err(store_err) => store_err,
        }
    }

    /// `POST /v1/totps/authenticate`.
    pub async fn authenticate_totp(
        &self,
        p: &Project,
        user: &UserRef,
        code: &TotpCode,
    ) -> Result<Authenticated, Error> {
        let owner = self.load_user(p, user).await?;
        self.check_lock(&owner)?;
        let now = self.now();
        let totps = self.store.usable_totps(&p.id, &owner.id, now).await?;
        let Some(t) = totps.first() else {
            return Err(Error::TotpsNotFoundForUser);
        };
        let secret = TotpSecret::from_bytes(&self.keys.open(&t.secret, &t.id)?)?;
        let Some(step) = totp::matching_step(&secret, code, now, self.policy.totp)? else {
            return Err(self.fail(p, &owner, Error::UnableToAuthenticateTotp).await);
        };
        let step = i64::try_from(step).map_err(Error::internal)?;
        if !self
            .store
            .accept_totp_step(&p.id, &owner.id, &t.id, step, now)
            .await?
        {
            return Err(self.fail(p, &owner, Error::TotpCodeAlreadyAuthenticated).await);
        }
        Ok(Authenticated {
            user: self.reload(p, &owner.id).await?,
            totp_id: t.id.clone(),
            recovery_code_id: None,
        })
    }

    /// `POST /v1/totps/recovery_codes`: every usable TOTP with its unused codes.
    pub async fn recovery_codes(&self, p: &Project, user: &UserRef) -> Result<(User, Vec<TotpCodes>), Error> {
        let owner = self.load_user(p, user).await?;
        let totps = self.store.usable_totps(&p.id, &owner.id, self.now()).await?;
        let ids: Vec<String> = totps.iter().map(|t| t.id.clone()).collect();
        let codes = self.store.unused_recovery_codes(&p.id, &ids).await?;
        let mut out = Vec::with_capacity(totps.len());
        for t in &totps {
            let mut shown = Vec::new();
            for c in codes.iter().filter(|c| c.totp_id == t.id) {
                let plain = self.keys.open(&c.sealed, &c.id)?;
                let text = String::from_utf8(plain).map_err(Error::internal)?;
                shown.push(RecoveryCode::parse(&text)?.display());
            }
            out.push(TotpCodes {
                totp_id: t.id.clone(),
                verified: t.verified,
                recovery_codes: shown,
            });
        }
        Ok((owner, out))
    }

    /// `POST /v1/totps/recover`: spends one recovery code of a verified TOTP.
    pub async fn recover(
        &self,
        p: &Project,
        user: &UserRef,
        code: &RecoveryCode,
    ) -> Result<Authenticated, Error> {
        let owner = self.load_user(p, user).await?;
        self.check_lock(&owner)?;
        let now = self.now();
        if self.store.usable_totps(&p.id, &owner.id, now).await?.is_empty() {
            return Err(Error::TotpsNotFoundForUser);
        }
        // The index is a keyed HMAC, so finding the row by it reveals nothing about the code;
        // the single conditional write below is the only evidence of a valid use (R-RC-1).
        let candidates = self.keys.index_candidates(code.normalised());
        let found = self
            .store
            .find_recovery_code(&p.id, &owner.id, &candidates)
            .await?;
        let Some(found) = found.filter(|f| f.totp_verified && !f.used) else {
            return Err(self
                .fail(p, &owner, Error::UnableToAuthenticateRecoveryCode)
                .await);
        };
        if !self
            .store
            .spend_recovery_code(&p.id, &owner.id, &found.id, now)
            .await?
        {
            return Err(self
                .fail(p, &owner, Error::UnableToAuthenticateRecoveryCode)
                .await);
        }
        Ok(Authenticated {
            user: self.reload(p, &owner.id).await?,
            totp_id: found.totp_id,
            recovery_code_id: Some(found.id),
        })
    }
}

/// The user's roles: `stytch_user` first, then the explicit ones, without repeats.
fn roles(explicit: Option<Vec<String>>) -> Vec<String> {
    let mut out = vec![DEFAULT_ROLE.to_owned()];
    for r in explicit.unwrap_or_default() {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}
