//! The services: what each Stytch route does, over the storage port, a key ring and a clock.

use crate::clock::Clock;
use crate::crypto::KeyRing;
use crate::ids::{self, Environment, ExternalId, Kind, TotpId, UserRef};
use crate::jwt::{self, PublicJwk, SigningKey};
use crate::model::*;
use crate::ports::{Inline, Loaded, Offload, Store, With};
use crate::recovery::{self, RecoveryCode};
use crate::session::{self as sess, Factor, FactorKind, Session, SessionWrite};
use crate::totp::{self, TotpCode, TotpParams, TotpSecret};
use crate::{Error, validate};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Tunables the services need, validated by the server at start.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub totp: TotpParams,
    pub lock: LockPolicy,
    /// How long a process trusts a project's credentials once looked up, before asking the
    /// store again: a revoked secret or a deleted project stops working within this bound on
    /// every replica. Zero looks them up on every request.
    pub credentials_ttl: std::time::Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            totp: TotpParams::default(),
            lock: LockPolicy {
                max_failures: 10,
                lock_secs: 3600,
            },
            credentials_ttl: std::time::Duration::from_secs(5),
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
// No `Debug`: it holds secrets that must never reach a log line.
pub struct CreatedTotp {
    pub totp_id: String,
    pub secret: String,
    pub qr_code: String,
    pub recovery_codes: Vec<String>,
    pub user: User,
}

/// A successful authenticate or recover.
// No `Debug`: it may hold a session token.
pub struct Authenticated {
    pub user: User,
    pub totp_id: String,
    /// Set when a recovery code was spent.
    pub recovery_code_id: Option<String>,
    /// Set when a session was asked for.
    pub session: Option<MintedSession>,
}

/// The session part of authenticate / recover requests.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    pub duration_minutes: Option<i64>,
    pub token: Option<String>,
    pub jwt: Option<String>,
    pub custom_claims: Option<Map<String, Value>>,
}

/// A session with what the client gets back: the token (`""` when the session was named by a
/// JWT, since only the token's hash is stored) and a fresh five-minute JWT.
// No `Debug`: it holds secrets that must never reach a log line.
pub struct MintedSession {
    pub session: Session,
    pub token: String,
    pub jwt: String,
}

/// Which session a request names.
#[derive(Debug, Clone)]
pub enum SessionRef {
    Id(String),
    Token(String),
    Jwt(String),
}

/// What authenticate / recover will do to sessions once the factor checks out.
enum SessionPlan {
    Create {
        duration_secs: i64,
        custom_claims: Map<String, Value>,
    },
    Attach {
        session_id: String,
        token: String,
        duration_secs: Option<i64>,
        custom_claims: Option<Map<String, Value>>,
    },
}

/// How long a process keeps a project's signing key before looking again (so a rotation made
/// by another replica is picked up).
const SIGNING_KEY_TTL_SECS: i64 = 60;

/// A TOTP with its unused recovery codes.
// No `Debug`: it holds secrets that must never reach a log line.
pub struct TotpCodes {
    pub totp_id: String,
    pub verified: bool,
    pub recovery_codes: Vec<String>,
}

/// A new project and its secret, shown once.
// No `Debug`: it holds secrets that must never reach a log line.
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
    signing: Mutex<HashMap<String, (Arc<SigningKey>, i64)>>,
    /// Where RSA work runs (see [`Offload`]).
    offload: Arc<dyn Offload>,
    /// Projects found by id, with their secrets' hashes and when they were looked up (bounded
    /// by `Policy::credentials_ttl`, and in size: unknown ids are never kept).
    credentials: Mutex<HashMap<String, CachedCredentials>>,
}

/// A project, its secrets' hashes, and when they were read from the store.
type CachedCredentials = (Project, Arc<Vec<Vec<u8>>>, std::time::Instant);

/// The user as a successful authenticate or recover left them, without reading them again:
/// the success transaction made them active, cleared the failures (the lock was not in force,
/// or it would have refused), and the TOTP it used is verified.
fn after_success(mut owner: User, totp_id: &str) -> User {
    owner.status = UserStatus::Active;
    owner.lock = None;
    for t in owner.totps.iter_mut().filter(|t| t.id == totp_id) {
        t.verified = true;
    }
    owner
}

/// A project name, trimmed: 1 to 100 characters and no ':' (it is the issuer in authenticator
/// apps).
fn project_name(name: &str) -> Result<&str, Error> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.contains(':') {
        return Err(Error::BadRequest(
            "a project name is 1 to 100 characters and has no ':' (it is the issuer in authenticator apps)"
                .into(),
        ));
    }
    Ok(name)
}

/// A new project secret and its id.
fn new_secret(env: Environment) -> Result<(String, String), Error> {
    let secret = format!(
        "secret-{env}-{}",
        data_encoding::BASE64URL.encode(&crate::random::bytes::<26>()?)
    );
    Ok((ids::mint(Kind::Secret, env), secret))
}

/// At most this many projects' credentials are kept; past it the cache starts over.
const CREDENTIALS_CACHE_MAX: usize = 10_000;

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
            signing: Mutex::new(HashMap::new()),
            offload: Arc::new(Inline),
            credentials: Mutex::new(HashMap::new()),
        }
    }

    /// Runs RSA signing and key generation through `offload` instead of inline.
    pub fn with_offload(mut self, offload: Arc<dyn Offload>) -> Self {
        self.offload = offload;
        self
    }

    /// Runs `f` through the offload and gives back its value.
    async fn offloaded<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let out = self
            .offload
            .run(Box::new(move || Box::new(f()) as Box<dyn std::any::Any + Send>))
            .await?;
        out.downcast::<T>()
            .map(|v| *v)
            .map_err(|_| Error::internal("an offloaded job returned another type"))
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
        let name = project_name(name)?;
        let project = Project {
            id: ids::mint(Kind::Project, env),
            env,
            name: name.to_owned(),
        };
        let (secret_id, secret) = new_secret(env)?;
        self.store
            .insert_project(&project, &secret_id, &secret_hash(&secret), self.now())
            .await?;
        Ok(NewProject { project, secret })
    }

    /// Retention (`latch purge`, and the server's background task): expired pending TOTPs, and
    /// sessions that ended more than `keep_secs` ago.
    pub async fn purge(&self, keep_secs: i64, dry_run: bool) -> Result<PurgeCounts, Error> {
        let now = self.now();
        let counts = self
            .store
            .purge(now, now.saturating_sub(keep_secs), dry_run)
            .await?;
        if !dry_run && counts != PurgeCounts::default() {
            tracing::info!(
                pending_totps = counts.pending_totps,
                recovery_codes = counts.recovery_codes,
                sessions = counts.sessions,
                "retention purged expired rows"
            );
        }
        Ok(counts)
    }

    /// `latch keys rotate`: re-seals every TOTP secret, recovery code (and its index) and
    /// signing key under the active key, `batch` rows at a time, each with a conditional write,
    /// while the server runs. Resumable: run it again and it carries on. Returns how many values
    /// of each kind it moved.
    pub async fn rotate_keys(&self, batch: u64) -> Result<[(SealedKind, u64); 3], Error> {
        let active = self.keys.active_id().to_owned();
        let mut moved = [
            (SealedKind::TotpSecret, 0),
            (SealedKind::RecoveryCode, 0),
            (SealedKind::SigningKey, 0),
        ];
        for (kind, count) in moved.iter_mut() {
            loop {
                let rows = self.store.sealed_batch(*kind, &active, batch).await?;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    let plain = self.keys.open(&row.sealed, &row.id)?;
                    let index = match kind {
                        SealedKind::RecoveryCode => {
                            let text = String::from_utf8(plain.clone()).map_err(Error::internal)?;
                            Some(self.keys.index(RecoveryCode::parse(&text)?.normalised())?)
                        }
                        _ => None,
                    };
                    let sealed = self.keys.seal(&plain, &row.id)?;
                    let index_ref = index.as_ref().map(|(k, m)| (k.as_str(), m.as_slice()));
                    if self
                        .store
                        .reseal(*kind, &row.id, &row.sealed.key_id, &sealed, index_ref)
                        .await?
                    {
                        *count += 1;
                    }
                    // A row whose write did not apply changed under us (deleted, or moved by
                    // another rotation); the next read finds whatever is still to do.
                }
            }
            tracing::info!(kind = ?kind, moved = *count, key = %active, "re-sealed under the active key");
        }
        self.signing.lock().map(|mut c| c.clear()).unwrap_or_default();
        Ok(moved)
    }

    /// `latch project list`.
    pub async fn list_projects(&self) -> Result<Vec<ProjectInfo>, Error> {
        self.store.list_projects().await
    }

    /// `latch project rename`: the name is the issuer new QR codes show.
    pub async fn rename_project(&self, project_id: &str, name: &str) -> Result<Project, Error> {
        let name = project_name(name)?;
        let p = self.project(project_id).await?;
        if !self.store.rename_project(&p.id, name).await? {
            return Err(Error::ProjectNotFound);
        }
        self.forget_credentials(&p.id);
        Ok(Project {
            name: name.to_owned(),
            ..p
        })
    }

    /// `latch project delete`: the project and every row of it.
    pub async fn delete_project(&self, project_id: &str) -> Result<(), Error> {
        let p = self.project(project_id).await?;
        if !self.store.delete_project(&p.id).await? {
            return Err(Error::ProjectNotFound);
        }
        self.forget_credentials(&p.id);
        tracing::warn!(project_id = %p.id, "project deleted by an operator");
        Ok(())
    }

    /// `latch project secret add`: one more working secret (shown only in this answer).
    pub async fn add_secret(&self, project_id: &str) -> Result<(String, String), Error> {
        let p = self.project(project_id).await?;
        let (secret_id, secret) = new_secret(p.env)?;
        self.store
            .insert_secret(&p.id, &secret_id, &secret_hash(&secret), self.now())
            .await?;
        self.forget_credentials(&p.id);
        Ok((secret_id, secret))
    }

    /// `latch project secret revoke`: stops one secret working (on other replicas within
    /// `Policy::credentials_ttl`); never the project's last one.
    pub async fn revoke_secret(&self, project_id: &str, secret_id: &str) -> Result<SecretRevocation, Error> {
        let p = self.project(project_id).await?;
        let outcome = self.store.revoke_secret(&p.id, secret_id, self.now()).await?;
        self.forget_credentials(&p.id);
        Ok(outcome)
    }

    fn forget_credentials(&self, project_id: &str) {
        if let Ok(mut cache) = self.credentials.lock() {
            cache.remove(project_id);
        }
    }

    /// `latch user unlock`: clears the lock and the consecutive-failure counter.
    pub async fn unlock_user(&self, p: &Project, user: &UserRef) -> Result<User, Error> {
        let owner = self.load_user(p, user).await?;
        if !self.store.unlock_user(&p.id, &owner.id).await? {
            return Err(Error::UserNotFound);
        }
        tracing::info!(user_id = %owner.id, "user unlocked by an operator");
        self.reload(p, &owner.id).await
    }

    /// `latch user reset-totp`: deletes the user's TOTPs (a lost device), which ends the
    /// sessions they minted. Returns the user afterwards and how many TOTPs went.
    pub async fn reset_totps(&self, p: &Project, user: &UserRef) -> Result<(User, usize), Error> {
        let owner = self.load_user(p, user).await?;
        let mut removed = 0;
        for t in &owner.totps {
            if self.store.delete_totp(&p.id, &t.id, self.now()).await?.is_some() {
                removed += 1;
            }
        }
        tracing::info!(user_id = %owner.id, removed, "TOTPs reset by an operator");
        Ok((self.reload(p, &owner.id).await?, removed))
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
        let Some((project, hashes)) = self.project_credentials(project_id).await? else {
            return Err(Error::Unauthorized);
        };
        // Compare against every active secret without stopping at the first match.
        let mut ok = subtle::Choice::from(0);
        for h in hashes.iter() {
            ok |= h.as_slice().ct_eq(presented.as_slice());
        }
        if bool::from(ok) {
            Ok(project)
        } else {
            Err(Error::Unauthorized)
        }
    }

    /// A project and its secrets' hashes, from the cache while fresh, else from the store.
    async fn project_credentials(
        &self,
        project_id: &str,
    ) -> Result<Option<(Project, Arc<Vec<Vec<u8>>>)>, Error> {
        let ttl = self.policy.credentials_ttl;
        if !ttl.is_zero() {
            let cached = self.credentials.lock().ok().and_then(|cache| {
                cache
                    .get(project_id)
                    .filter(|(_, _, at)| at.elapsed() < ttl)
                    .map(|(p, h, _)| (p.clone(), h.clone()))
            });
            if cached.is_some() {
                return Ok(cached);
            }
        }
        let Some((project, hashes)) = self.store.project_auth(project_id).await? else {
            return Ok(None);
        };
        let hashes = Arc::new(hashes);
        if !ttl.is_zero()
            && let Ok(mut cache) = self.credentials.lock()
        {
            if cache.len() >= CREDENTIALS_CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                project_id.to_owned(),
                (project.clone(), hashes.clone(), std::time::Instant::now()),
            );
        }
        Ok(Some((project, hashes)))
    }

    // ---- users ----

    async fn load_user(&self, p: &Project, user: &UserRef) -> Result<User, Error> {
        Ok(self.load_with(p, user, With::Nothing).await?.user)
    }

    /// The user and what `with` names, in one round trip to the store.
    async fn load_with(&self, p: &Project, user: &UserRef, with: With<'_>) -> Result<Loaded, Error> {
        let now = self.now();
        let mut loaded = self
            .store
            .load_user(&p.id, user, now, with)
            .await?
            .ok_or(Error::UserNotFound)?;
        loaded.user = loaded.user.settle(now);
        Ok(loaded)
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

    /// `POST /v1/users/search`: one page of users and the number of all matches, with the
    /// cursor of the next page (`None` on the last).
    pub async fn search_users(
        &self,
        p: &Project,
        limit: Option<i64>,
        cursor: Option<&str>,
        query: Option<&Value>,
    ) -> Result<(Vec<User>, u64, Option<String>), Error> {
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(crate::search::decode_cursor(&self.keys, &p.id, c)?),
            None => None,
        };
        let mut search = crate::search::parse(limit, query, after)?;
        let page = search.limit;
        // One more than asked tells whether another page follows.
        search.limit = page + 1;
        let now = self.now();
        let (mut users, total) = self.store.search_users(&p.id, &search, now).await?;
        let more = users.len() as u64 > page;
        users.truncate(usize::try_from(page).unwrap_or(usize::MAX));
        let next = match (more, users.last()) {
            (true, Some(last)) => Some(crate::search::encode_cursor(
                &self.keys,
                &p.id,
                (last.created_at, &last.id),
            )?),
            _ => None,
        };
        Ok((users.into_iter().map(|u| u.settle(now)).collect(), total, next))
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
            .delete_totp(&p.id, &totp_id.0, self.now())
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
        let (codes, shown) = recovery::issue(&self.keys, p.env)?;
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
            Some(l) => Err(Error::user_locked(l.expires_at, self.now())),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt in the database, then returns the error the client gets: a user
    /// found already locked gets the lock error, so a locked user answers 429 to every code,
    /// right or wrong (nothing tells a guesser which code was right).
    async fn fail(&self, p: &Project, user: &User, e: Error) -> Error {
        let now = self.now();
        match self
            .store
            .record_failure(&p.id, &user.id, now, self.policy.lock)
            .await
        {
            Ok(FailureOutcome::LockedNow(until)) => {
                tracing::warn!(user_id = %user.id, lock_expires_at = until, "user locked after consecutive failed attempts");
                metrics::counter!("latch_user_lockouts_total").increment(1);
                e
            }
            Ok(FailureOutcome::AlreadyLocked(until)) => Error::user_locked(until, now),
            Ok(FailureOutcome::Counted) => e,
            Err(store_err) => store_err,
        }
    }

    /// `POST /v1/totps/authenticate`.
    pub async fn authenticate_totp(
        &self,
        p: &Project,
        user: &UserRef,
        code: &TotpCode,
        session: &SessionRequest,
    ) -> Result<Authenticated, Error> {
        let Loaded {
            user: owner, totps, ..
        } = self.load_with(p, user, With::TotpSecrets).await?;
        let plan = self.plan_session(p, &owner, session).await?;
        self.check_lock(&owner)?;
        let now = self.now();
        let Some(t) = totps.first() else {
            return Err(Error::TotpsNotFoundForUser);
        };
        let secret = TotpSecret::from_bytes(&self.keys.open(&t.secret, &t.id)?)?;
        let Some(step) = totp::matching_step(&secret, code, now, self.policy.totp)? else {
            return Err(self.fail(p, &owner, Error::UnableToAuthenticateTotp).await);
        };
        let step = i64::try_from(step).map_err(Error::internal)?;
        let factor = Factor {
            kind: FactorKind::Totp,
            totp_id: t.id.clone(),
            recovery_code_id: None,
            created_at: now,
            last_authenticated_at: now,
        };
        let (write, token) = self.session_write(plan, &owner, factor, now)?;
        if !self
            .store
            .accept_totp_step(&p.id, &owner.id, &t.id, step, now, write.as_ref())
            .await?
        {
            metrics::counter!("latch_replays_rejected_total", "factor" => "totp").increment(1);
            return Err(self.fail(p, &owner, Error::TotpCodeAlreadyAuthenticated).await);
        }
        let user = after_success(owner, &t.id);
        let session = self.minted(p, &user, write, token).await?;
        Ok(Authenticated {
            user,
            totp_id: t.id.clone(),
            recovery_code_id: None,
            session,
        })
    }

    /// `POST /v1/totps/recovery_codes`: every usable TOTP with its unused codes.
    pub async fn recovery_codes(&self, p: &Project, user: &UserRef) -> Result<(User, Vec<TotpCodes>), Error> {
        let Loaded {
            user: owner, codes, ..
        } = self.load_with(p, user, With::UnusedCodes).await?;
        // The user's usable TOTPs came with the user: verified first, then newest first.
        let mut totps = owner.totps.clone();
        totps.reverse();
        totps.sort_by_key(|t| !t.verified);
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
        session: &SessionRequest,
    ) -> Result<Authenticated, Error> {
        // The index is a keyed HMAC, so finding the row by it reveals nothing about the code;
        // the single conditional write below is the only evidence of a valid use (R-RC-1).
        let candidates = self.keys.index_candidates(code.normalised());
        let Loaded {
            user: owner, found, ..
        } = self.load_with(p, user, With::CodeByIndex(&candidates)).await?;
        let plan = self.plan_session(p, &owner, session).await?;
        self.check_lock(&owner)?;
        let now = self.now();
        // The user's usable TOTPs came with the user.
        if owner.totps.is_empty() {
            return Err(Error::TotpsNotFoundForUser);
        }
        if found.as_ref().is_some_and(|f| f.used) {
            metrics::counter!("latch_replays_rejected_total", "factor" => "recovery_code").increment(1);
        }
        let Some(found) = found.filter(|f| f.totp_verified && !f.used) else {
            return Err(self
                .fail(p, &owner, Error::UnableToAuthenticateRecoveryCode)
                .await);
        };
        let factor = Factor {
            kind: FactorKind::RecoveryCode,
            totp_id: found.totp_id.clone(),
            recovery_code_id: Some(found.id.clone()),
            created_at: now,
            last_authenticated_at: now,
        };
        let (write, token) = self.session_write(plan, &owner, factor, now)?;
        if !self
            .store
            .spend_recovery_code(&p.id, &owner.id, &found.id, now, write.as_ref())
            .await?
        {
            // Another request spent it first.
            metrics::counter!("latch_replays_rejected_total", "factor" => "recovery_code").increment(1);
            return Err(self
                .fail(p, &owner, Error::UnableToAuthenticateRecoveryCode)
                .await);
        }
        let user = after_success(owner, &found.totp_id);
        let session = self.minted(p, &user, write, token).await?;
        Ok(Authenticated {
            user,
            totp_id: found.totp_id,
            recovery_code_id: Some(found.id),
            session,
        })
    }

    // ---- sessions ----

    /// Checks the session part of an authenticate / recover request before the factor is
    /// looked at, so a bad session argument never spends a code.
    async fn plan_session(
        &self,
        p: &Project,
        owner: &User,
        req: &SessionRequest,
    ) -> Result<Option<SessionPlan>, Error> {
        let duration_secs = req.duration_minutes.map(sess::duration_secs).transpose()?;
        let custom_claims = req
            .custom_claims
            .clone()
            .map(sess::clean_custom_claims)
            .transpose()?;
        let named = match (&req.token, &req.jwt) {
            (Some(_), Some(_)) => return Err(Error::TooManySessionArguments),
            (Some(t), None) => Some(SessionRef::Token(t.clone())),
            (None, Some(j)) => Some(SessionRef::Jwt(j.clone())),
            (None, None) => None,
        };
        match named {
            Some(r) => {
                let token = if let SessionRef::Token(t) = &r {
                    t.clone()
                } else {
                    String::new()
                };
                let s = self.find_live_session(p, &r).await?;
                if s.user_id != owner.id {
                    return Err(Error::SessionNotFound);
                }
                Ok(Some(SessionPlan::Attach {
                    session_id: s.id,
                    token,
                    duration_secs,
                    custom_claims,
                }))
            }
            // A new session has nothing to delete: claims sent as null are simply not set.
            None => Ok(duration_secs.map(|d| SessionPlan::Create {
                duration_secs: d,
                custom_claims: custom_claims
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .collect(),
            })),
        }
    }

    /// Turns a plan into the write the store commits with the factor, and the token to return.
    fn session_write(
        &self,
        plan: Option<SessionPlan>,
        owner: &User,
        factor: Factor,
        now: i64,
    ) -> Result<(Option<SessionWrite>, String), Error> {
        Ok(match plan {
            None => (None, String::new()),
            Some(SessionPlan::Create {
                duration_secs,
                custom_claims,
            }) => {
                let token = sess::new_token()?;
                let env = ids::classify(Kind::User, &owner.id);
                let env = if env == ids::Parsed::Id(Environment::Live) {
                    Environment::Live
                } else {
                    Environment::Test
                };
                let session = Session {
                    id: ids::mint(Kind::Session, env),
                    user_id: owner.id.clone(),
                    totp_id: factor.totp_id.clone(),
                    factors: vec![factor],
                    custom_claims,
                    started_at: now,
                    last_accessed_at: now,
                    expires_at: now + duration_secs,
                };
                (
                    Some(SessionWrite::Create {
                        session,
                        token_hash: sess::token_hash(&token),
                    }),
                    token,
                )
            }
            Some(SessionPlan::Attach {
                session_id,
                token,
                duration_secs,
                custom_claims,
            }) => (
                Some(SessionWrite::Attach {
                    session_id,
                    factor,
                    expires_at: duration_secs.map(|d| now + d),
                    custom_claims,
                }),
                token,
            ),
        })
    }

    /// The session after a successful write, with a fresh JWT.
    async fn minted(
        &self,
        p: &Project,
        user: &User,
        write: Option<SessionWrite>,
        token: String,
    ) -> Result<Option<MintedSession>, Error> {
        let session = match write {
            None => return Ok(None),
            Some(SessionWrite::Create { session, .. }) => session,
            Some(SessionWrite::Attach { session_id, .. }) => self
                .store
                .find_session(&p.id, &SessionLookup::Id(session_id), self.now())
                .await?
                .ok_or(Error::SessionNotFound)?,
        };
        let jwt = self.sign(p, &session, user).await?;
        Ok(Some(MintedSession { session, token, jwt }))
    }

    async fn sign(&self, p: &Project, session: &Session, user: &User) -> Result<String, Error> {
        let key = self.signing_key(p).await?;
        let claims = session.jwt_claims(&p.id, &user.roles, self.now());
        self.offloaded(move || key.sign(&claims)).await?
    }

    /// The key that signs this project's JWTs, cached for a minute; created on first use.
    async fn signing_key(&self, p: &Project) -> Result<Arc<SigningKey>, Error> {
        let now = self.now();
        let cached = self.signing.lock().ok().and_then(|cache| {
            cache
                .get(&p.id)
                .filter(|(_, at)| now - *at < SIGNING_KEY_TTL_SECS)
                .map(|(k, _)| k.clone())
        });
        if let Some(k) = cached {
            return Ok(k);
        }
        let stored = match self.store.signing_keys(&p.id).await?.into_iter().next() {
            Some(k) => k,
            None => self.new_signing_key(p, None).await?,
        };
        let der = self.keys.open(&stored.private, &stored.public.kid)?;
        let key = Arc::new(SigningKey::from_pkcs8(&stored.public.kid, &der)?);
        if let Ok(mut cache) = self.signing.lock() {
            cache.insert(p.id.clone(), (key.clone(), now));
        }
        Ok(key)
    }

    /// Generates and stores a key, dated after `newest` so "newest first" is unambiguous even
    /// within one second.
    async fn new_signing_key(&self, p: &Project, newest: Option<i64>) -> Result<StoredSigningKey, Error> {
        let kid = ids::mint(Kind::Jwk, p.env);
        let for_job = kid.clone();
        let generated = self.offloaded(move || jwt::generate(&for_job)).await??;
        let stored = StoredSigningKey {
            private: self.keys.seal(&generated.pkcs8_der, &kid)?,
            public: generated.public,
            created_at: std::cmp::max(self.now(), newest.map_or(i64::MIN, |n| n + 1)),
        };
        self.store.insert_signing_key(&p.id, &stored).await?;
        tracing::info!(project_id = %p.id, kid = %kid, "created a session signing key");
        Ok(stored)
    }

    /// Adds a new signing key; JWTs signed by the previous one keep verifying (JWKS serves
    /// both) until they expire.
    pub async fn rotate_signing_key(&self, project_id: &str) -> Result<PublicJwk, Error> {
        let p = self.project(project_id).await?;
        let newest = self
            .store
            .signing_keys(&p.id)
            .await?
            .first()
            .map(|k| k.created_at);
        let k = self.new_signing_key(&p, newest).await?;
        if let Ok(mut cache) = self.signing.lock() {
            cache.remove(&p.id);
        }
        Ok(k.public)
    }

    /// A project by id (`project_not_found` otherwise); also for the admin commands.
    pub async fn project(&self, project_id: &str) -> Result<Project, Error> {
        if ids::project_environment(project_id).is_none() {
            return Err(Error::ProjectNotFound);
        }
        self.store
            .project_auth(project_id)
            .await?
            .map(|(p, _)| p)
            .ok_or(Error::ProjectNotFound)
    }

    /// The public keys a project's JWTs verify against: the current and the previous one.
    pub async fn jwks(&self, project_id: &str) -> Result<Vec<PublicJwk>, Error> {
        let p = self.project(project_id).await?;
        let keys = self.verification_keys(&p).await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        // A project that never signed yet gets its first key now, so SDKs can always fetch one.
        self.signing_key(&p).await?;
        self.verification_keys(&p).await
    }

    /// The current and the previous public key: what JWKS serves and JWTs verify against.
    async fn verification_keys(&self, p: &Project) -> Result<Vec<PublicJwk>, Error> {
        Ok(self
            .store
            .signing_keys(&p.id)
            .await?
            .into_iter()
            .take(2)
            .map(|k| k.public)
            .collect())
    }

    /// The session a token or JWT names, if it is live.
    async fn find_live_session(&self, p: &Project, r: &SessionRef) -> Result<Session, Error> {
        let lookup = match r {
            SessionRef::Id(id) => SessionLookup::Id(id.clone()),
            SessionRef::Token(t) => {
                sess::check_token_shape(t)?;
                SessionLookup::TokenHash(sess::token_hash(t))
            }
            SessionRef::Jwt(j) => SessionLookup::Id(self.session_id_from_jwt(p, j).await?),
        };
        self.store
            .find_session(&p.id, &lookup, self.now())
            .await?
            .ok_or(Error::SessionNotFound)
    }

    /// Verifies a JWT's signature against the project's keys (not its expiry: an expired JWT of
    /// a live session can be refreshed) and returns the session id it carries.
    async fn session_id_from_jwt(&self, p: &Project, token: &str) -> Result<String, Error> {
        let keys = self.verification_keys(p).await?;
        // Not shaped like a JWT: a malformed argument. Shaped like one but not a JWT of this
        // project (undecodable, forged, another project's): there is no such session.
        if !jwt::looks_like_jwt(token) {
            return Err(Error::UnableToParseSessionJwt);
        }
        let claims = jwt::verify(token, &keys).map_err(|_| Error::SessionNotFound)?;
        if claims["iss"] != Value::String(format!("stytch.com/{}", p.id)) {
            return Err(Error::SessionNotFound);
        }
        claims[sess::SESSION_CLAIM]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or(Error::SessionNotFound)
    }

    /// `POST /v1/sessions/authenticate`.
    pub async fn authenticate_session(
        &self,
        p: &Project,
        token: Option<String>,
        jwt: Option<String>,
        duration_minutes: Option<i64>,
        custom_claims: Option<Map<String, Value>>,
    ) -> Result<(MintedSession, User), Error> {
        let r = match (token, jwt) {
            (Some(_), Some(_)) => return Err(Error::TooManySessionArguments),
            (None, None) => return Err(Error::NoSessionArguments),
            (Some(t), None) => SessionRef::Token(t),
            (None, Some(j)) => SessionRef::Jwt(j),
        };
        let duration = duration_minutes.map(sess::duration_secs).transpose()?;
        let claims = custom_claims.map(sess::clean_custom_claims).transpose()?;
        let found = self.find_live_session(p, &r).await?;
        let now = self.now();
        let session = self
            .store
            .touch_session(&p.id, &found.id, now, duration.map(|d| now + d), claims.as_ref())
            .await?
            .ok_or(Error::SessionNotFound)?;
        let user = self.reload(p, &session.user_id).await?;
        let jwt = self.sign(p, &session, &user).await?;
        let token = if let SessionRef::Token(t) = r {
            t
        } else {
            String::new()
        };
        Ok((MintedSession { session, token, jwt }, user))
    }

    /// `GET /v1/sessions?user_id=`: the user's live sessions.
    /// `GET /v1/sessions?user_id=`: the user (for the sessions' roles) and its live sessions.
    pub async fn list_sessions(&self, p: &Project, user: &UserRef) -> Result<(User, Vec<Session>), Error> {
        let owner = self.load_user(p, user).await?;
        let sessions = self.store.list_sessions(&p.id, &owner.id, self.now()).await?;
        Ok((owner, sessions))
    }

    /// `POST /v1/sessions/revoke`.
    pub async fn revoke_session(&self, p: &Project, r: &SessionRef) -> Result<(), Error> {
        let s = self.find_live_session(p, r).await?;
        if self.store.revoke_session(&p.id, &s.id, self.now()).await? {
            Ok(())
        } else {
            Err(Error::SessionNotFound)
        }
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
