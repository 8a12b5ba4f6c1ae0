//! Latch's persistence: sea-orm entities, migrations, and the implementation of
//! [`domain::ports::Store`] on SQLite and Postgres.
//!
//! Every query is scoped by project. Single-use state changes are conditional `UPDATE`s whose
//! row count is the only evidence of success (architecture §4); write transactions on SQLite
//! begin `IMMEDIATE`, so a race waits for the lock instead of failing with SQLITE_BUSY.
//! Depends on `domain` and sea-orm only: never on HTTP or Redis.

mod bundle;
mod entity;
mod migration;
mod success;

use domain::Error;
use domain::crypto::Sealed;
use domain::ids::UserRef;
use domain::model::*;
use domain::ports::{Loaded, With};
use domain::search::{Filter, Search};
use domain::session::{Session, SessionWrite};
use entity::{
    project, project_secret, recovery_code, session, signing_key, totp, user, user_email, user_phone,
};
use sea_orm::sea_query::{
    BinOper, CaseStatement, Expr, ExprTrait, Func, IntoColumnRef, IntoTableRef, LikeExpr, Query,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, SqlErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::{Map, Value};
use std::time::Duration;

pub use migration::Migrator;
use success::{Single, Who};

/// Connection pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Postgres only: the schema to use (tests give each run its own).
    pub schema: Option<String>,
}

/// The pool size for a database URL when the settings leave it open: the sizes `cargo xtask
/// bench` found best on 2 cores (issue 8): 16 on Postgres, where a backend per connection keeps
/// 16 concurrent requests from queueing for the pool, and 4 on SQLite, where each connection
/// is a thread with its own page cache and more bought nothing but memory. `latch` and the
/// bench's ceilings (`latch-baseline`) both size their pools by it.
pub fn default_pool_size(url: &str) -> u32 {
    if url.starts_with("postgres") { 16 } else { 4 }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

/// The database behind the storage port.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite has one writer at a time: the hot write paths of this process wait here in
    /// order instead of in SQLite's busy handler, whose sleeps of up to 100 ms made the tail
    /// of `authenticate` (issue 8). Other processes still meet `busy_timeout`.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Postgres advisory lock key held while migrations run, so replicas starting together do not
/// race (spec §5.21). The bytes spell "latchmig".
const MIGRATION_LOCK: i64 = 0x6c61_7463_686d_6967;

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest))
}

impl Db {
    /// Connects to `sqlite://path` (created with its folder if missing) or `postgres://…`.
    pub async fn connect(url: &str, pool: &PoolSettings) -> Result<Db, DbErr> {
        let mut opt = ConnectOptions::new(url.to_owned());
        opt.max_connections(pool.max_connections)
            .min_connections(0)
            .acquire_timeout(pool.acquire_timeout)
            .connect_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .test_before_acquire(false);
        if let Some(schema) = &pool.schema {
            opt.set_schema_search_path(schema.clone());
        }
        if let Some(path) = sqlite_path(url) {
            let dir = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|_| path != ":memory:") {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
            }
            opt.map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        Ok(Db {
            conn: Database::connect(opt).await?,
            writer: Default::default(),
        })
    }

    /// How many sealed values each key id seals, by kind (`latch keys status`, and the start-up
    /// check that no key still in use was removed from the ring): key id → kind → count.
    pub async fn key_usage(
        &self,
    ) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>, DbErr> {
        #[derive(FromQueryResult)]
        struct Usage {
            kind: String,
            key_id: String,
            n: i64,
        }
        let sql = "SELECT 'totp_secrets' AS kind, secret_key_id AS key_id, COUNT(*) AS n FROM totps GROUP BY secret_key_id \
                   UNION ALL SELECT 'recovery_codes', code_key_id, COUNT(*) FROM recovery_codes GROUP BY code_key_id \
                   UNION ALL SELECT 'recovery_code_indexes', index_key_id, COUNT(*) FROM recovery_codes GROUP BY index_key_id \
                   UNION ALL SELECT 'signing_keys', private_key_id, COUNT(*) FROM signing_keys GROUP BY private_key_id";
        let rows = Usage::find_by_statement(sea_orm::Statement::from_string(self.backend(), sql))
            .all(&self.conn)
            .await?;
        let mut out: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
            Default::default();
        for r in rows {
            *out.entry(r.key_id).or_default().entry(r.kind).or_default() += u64::try_from(r.n).unwrap_or(0);
        }
        Ok(out)
    }

    /// A consistent copy of a SQLite database at `path` while it is in use (`VACUUM INTO`).
    /// Postgres has `pg_dump` for this.
    pub async fn backup_sqlite(&self, path: &std::path::Path) -> Result<(), DbErr> {
        if self.backend() != DatabaseBackend::Sqlite {
            return Err(DbErr::Custom(
                "latch backup copies SQLite databases; back up Postgres with pg_dump (README)".into(),
            ));
        }
        let path = path
            .to_str()
            .ok_or_else(|| DbErr::Custom("the backup path is not UTF-8".into()))?;
        let quoted = path.replace('\'', "''");
        self.conn
            .execute_unprepared(&format!("VACUUM INTO '{quoted}'"))
            .await
            .map(|_| ())
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations; on Postgres under an advisory lock.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.backend() == DatabaseBackend::Postgres {
            let txn = self.conn.begin().await?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        } else {
            Migrator::up(&self.conn, None).await
        }
    }

    /// Answers a trivial query (for readiness checks).
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Connections open in the pool, and how many of them are idle (for metrics).
    pub fn pool_usage(&self) -> (u32, usize) {
        // The backend is checked first: sea-orm's pool getters panic on the other backend.
        match self.backend() {
            DatabaseBackend::Postgres => {
                let p = self.conn.get_postgres_connection_pool();
                (p.size(), p.num_idle())
            }
            DatabaseBackend::Sqlite => {
                let p = self.conn.get_sqlite_connection_pool();
                (p.size(), p.num_idle())
            }
            _ => (0, 0),
        }
    }

    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }

    /// Bulk insert for `cargo xtask bench`, not used by the service: users, each with a TOTP
    /// that is already verified (and never used) and its recovery codes, a few hundred users
    /// per statement and one write transaction per batch.
    pub async fn seed_verified_users(
        &self,
        project_id: &str,
        users: &[(NewUser, NewTotp)],
    ) -> Result<(), Error> {
        // Under both backends' bound-parameter limits: 11 columns × 10 codes × 250 users.
        for batch in users.chunks(250) {
            let txn = self.write().await?;
            let result = async {
                let rows = batch.iter().map(|(u, _)| user_row(project_id, u));
                user::Entity::insert_many(rows.collect::<Result<Vec<_>, Error>>()?)
                    .exec(&txn)
                    .await
                    .map_err(unique_err)?;
                let emails: Vec<_> = batch
                    .iter()
                    .filter_map(|(u, _)| email_row(project_id, u))
                    .collect();
                if !emails.is_empty() {
                    user_email::Entity::insert_many(emails)
                        .exec(&txn)
                        .await
                        .map_err(unique_err)?;
                }
                let totps = batch.iter().map(|(_, t)| totp_row(project_id, t, true));
                totp::Entity::insert_many(totps)
                    .exec(&txn)
                    .await
                    .map_err(unique_err)?;
                let codes = batch.iter().flat_map(|(_, t)| code_rows(project_id, t));
                recovery_code::Entity::insert_many(codes)
                    .exec(&txn)
                    .await
                    .map_err(db_err)?;
                Ok::<_, Error>(())
            }
            .await;
            settle(txn, result).await?;
        }
        Ok(())
    }

    /// What any bulk load needs before traffic: fresh planner statistics (plans chosen while
    /// a table looked empty stay bad until autovacuum gets to it) and, on Postgres, a vacuum,
    /// so autovacuum does not start on the new rows in the middle of a measurement.
    pub async fn analyze(&self) -> Result<(), DbErr> {
        let sql = match self.backend() {
            DatabaseBackend::Postgres => "VACUUM ANALYZE",
            _ => "ANALYZE",
        };
        self.conn.execute_unprepared(sql).await.map(|_| ())
    }

    /// The raw connection, for tests that inspect what is stored.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// On SQLite, a place in this process's queue of writers (see [`Db::writer`]); on
    /// Postgres nothing, since rows lock one by one there.
    async fn queue(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend() {
            DatabaseBackend::Sqlite => Some(self.writer.lock().await),
            _ => None,
        }
    }

    async fn write(&self) -> Result<DatabaseTransaction, Error> {
        self.conn
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_err)
    }
}

/// Ends a write transaction: commits it when its work succeeded, else rolls it back and
/// returns the work's error.
async fn settle<T>(txn: DatabaseTransaction, result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Ok(v) => {
            txn.commit().await.map_err(db_err)?;
            Ok(v)
        }
        Err(e) => {
            txn.rollback().await.map_err(db_err)?;
            Err(e)
        }
    }
}

fn db_err(e: DbErr) -> Error {
    if unreachable(&e) {
        // The database is unreachable or the pool is exhausted: a 503 the client may retry.
        tracing::warn!(error = %e, "database unavailable");
        Error::ServiceUnavailable
    } else {
        Error::internal(e)
    }
}

/// The database could not be asked (as opposed to refusing the statement): no connection, a
/// connection that broke mid-statement, or a pool that timed out or closed.
fn unreachable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Exec(RuntimeErr::SqlxError(s)) => matches!(
            s.as_ref(),
            Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed | Sqlx::Protocol(_)
        ),
        _ => false,
    }
}

/// Maps a unique violation to the domain error its index stands for.
fn unique_err(e: DbErr) -> Error {
    if let Some(SqlErr::UniqueConstraintViolation(msg)) = e.sql_err() {
        if msg.contains("email") {
            return Error::DuplicateEmail;
        }
        if msg.contains("phone") {
            return Error::DuplicatePhoneNumber;
        }
        if msg.contains("external_id") {
            return Error::DuplicateUserExternalId;
        }
        if msg.contains("totps") {
            return Error::ActiveTotpExists;
        }
    }
    db_err(e)
}

fn parse_object(s: &str) -> Result<Map<String, Value>, Error> {
    serde_json::from_str(s).map_err(Error::internal)
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn user_row(project_id: &str, u: &NewUser) -> Result<user::ActiveModel, Error> {
    Ok(user::ActiveModel {
        id: Set(u.id.clone()),
        project_id: Set(project_id.to_owned()),
        external_id: Set(u.external_id.clone()),
        status: Set(u.status.as_str().to_owned()),
        first_name: Set(u.name.first_name.clone()),
        middle_name: Set(u.name.middle_name.clone()),
        last_name: Set(u.name.last_name.clone()),
        trusted_metadata: Set(to_json(&u.trusted_metadata)?),
        untrusted_metadata: Set(to_json(&u.untrusted_metadata)?),
        roles: Set(to_json(&u.roles)?),
        failed_attempts: Set(0),
        lock_created_at: Set(None),
        lock_expires_at: Set(None),
        created_at: Set(u.created_at),
        updated_at: Set(u.created_at),
    })
}

fn email_row(project_id: &str, u: &NewUser) -> Option<user_email::ActiveModel> {
    u.email.as_ref().map(|e| user_email::ActiveModel {
        id: Set(e.id.clone()),
        project_id: Set(project_id.to_owned()),
        user_id: Set(u.id.clone()),
        email: Set(e.email.clone()),
        verified: Set(e.verified),
        created_at: Set(u.created_at),
    })
}

fn phone_row(project_id: &str, u: &NewUser) -> Option<user_phone::ActiveModel> {
    u.phone_number.as_ref().map(|ph| user_phone::ActiveModel {
        id: Set(ph.id.clone()),
        project_id: Set(project_id.to_owned()),
        user_id: Set(u.id.clone()),
        phone_number: Set(ph.phone_number.clone()),
        verified: Set(ph.verified),
        created_at: Set(u.created_at),
    })
}

/// A new TOTP's row: pending until its expiry, or (bench seeding) already verified.
fn totp_row(project_id: &str, t: &NewTotp, verified: bool) -> totp::ActiveModel {
    totp::ActiveModel {
        id: Set(t.id.clone()),
        project_id: Set(project_id.to_owned()),
        user_id: Set(t.user_id.clone()),
        secret_key_id: Set(t.secret.key_id.clone()),
        secret_sealed: Set(t.secret.bytes.clone()),
        verified: Set(verified),
        expires_at: Set((!verified).then_some(t.expires_at)),
        last_used_step: Set(None),
        created_at: Set(t.created_at),
    }
}

fn code_rows<'a>(
    project_id: &'a str,
    t: &'a NewTotp,
) -> impl Iterator<Item = recovery_code::ActiveModel> + 'a {
    t.recovery_codes
        .iter()
        .enumerate()
        .map(move |(i, c)| recovery_code::ActiveModel {
            id: Set(c.id.clone()),
            project_id: Set(project_id.to_owned()),
            user_id: Set(t.user_id.clone()),
            totp_id: Set(t.id.clone()),
            code_index: Set(c.index.clone()),
            index_key_id: Set(c.index_key_id.clone()),
            code_key_id: Set(c.sealed.key_id.clone()),
            code_sealed: Set(c.sealed.bytes.clone()),
            position: Set(i64::try_from(i).unwrap_or(i64::MAX)),
            used_at: Set(None),
            created_at: Set(t.created_at),
        })
}

/// Takes the user's row lock (Postgres) or the write lock (SQLite) and checks it exists.
async fn touch_user(
    txn: &DatabaseTransaction,
    project_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), Error> {
    let r = user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::ProjectId.eq(project_id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    if r.rows_affected == 1 {
        Ok(())
    } else {
        Err(Error::UserNotFound)
    }
}

fn unlocked(now: i64) -> Condition {
    Condition::any()
        .add(user::Column::LockExpiresAt.is_null())
        .add(user::Column::LockExpiresAt.lte(now))
}

fn visible_totps(now: i64) -> Condition {
    Condition::any()
        .add(totp::Column::Verified.eq(true))
        .add(totp::Column::ExpiresAt.gt(now))
}

fn to_session(m: session::Model) -> Result<Session, Error> {
    Ok(Session {
        factors: serde_json::from_str(&m.factors).map_err(Error::internal)?,
        custom_claims: parse_object(&m.custom_claims)?,
        id: m.id,
        user_id: m.user_id,
        totp_id: m.totp_id,
        started_at: m.started_at,
        last_accessed_at: m.last_accessed_at,
        expires_at: m.expires_at,
    })
}

fn live_sessions(now: i64) -> Condition {
    Condition::all()
        .add(session::Column::RevokedAt.is_null())
        .add(session::Column::ExpiresAt.gt(now))
}

/// Marks a live session accessed (taking its row lock) and applies changes to it; `None` if it
/// is not live or not the given user's.
async fn update_live_session(
    txn: &DatabaseTransaction,
    project_id: &str,
    session_id: &str,
    user_id: Option<&str>,
    now: i64,
    change: impl FnOnce(&mut Session),
) -> Result<Option<Session>, Error> {
    let mut q = session::Entity::update_many()
        .col_expr(session::Column::LastAccessedAt, Expr::value(now))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::ProjectId.eq(project_id))
        .filter(live_sessions(now));
    if let Some(u) = user_id {
        q = q.filter(session::Column::UserId.eq(u));
    }
    if q.exec(txn).await.map_err(db_err)?.rows_affected != 1 {
        return Ok(None);
    }
    let Some(row) = session::Entity::find_by_id(session_id)
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let mut s = to_session(row)?;
    change(&mut s);
    session::Entity::update_many()
        .col_expr(session::Column::Factors, Expr::value(to_json(&s.factors)?))
        .col_expr(
            session::Column::CustomClaims,
            Expr::value(to_json(&s.custom_claims)?),
        )
        .col_expr(session::Column::ExpiresAt, Expr::value(s.expires_at))
        .filter(session::Column::Id.eq(session_id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(Some(s))
}

/// Applies the session part of a successful authentication inside its transaction.
async fn apply_session_write(
    txn: &DatabaseTransaction,
    project_id: &str,
    user_id: &str,
    write: &SessionWrite,
    now: i64,
) -> Result<(), Error> {
    match write {
        SessionWrite::Create {
            session: s,
            token_hash,
        } => {
            session::Entity::insert(session::ActiveModel {
                id: Set(s.id.clone()),
                project_id: Set(project_id.to_owned()),
                user_id: Set(user_id.to_owned()),
                totp_id: Set(s.totp_id.clone()),
                token_hash: Set(token_hash.clone()),
                factors: Set(to_json(&s.factors)?),
                custom_claims: Set(to_json(&s.custom_claims)?),
                started_at: Set(s.started_at),
                last_accessed_at: Set(s.last_accessed_at),
                expires_at: Set(s.expires_at),
                revoked_at: Set(None),
            })
            .exec(txn)
            .await
            .map_err(db_err)?;
            Ok(())
        }
        SessionWrite::Attach {
            session_id,
            factor,
            expires_at,
            custom_claims,
        } => {
            let updated = update_live_session(txn, project_id, session_id, Some(user_id), now, |s| {
                factor.merge_into(&mut s.factors);
                if let Some(e) = expires_at {
                    s.expires_at = *e;
                }
                if let Some(c) = custom_claims {
                    domain::validate::merge_metadata(&mut s.custom_claims, c);
                }
            })
            .await?;
            updated.map(|_| ()).ok_or(Error::SessionNotFound)
        }
    }
}

/// Commits `txn` after the session write, or rolls everything back if the write fails.
async fn finish_success(
    txn: DatabaseTransaction,
    project_id: &str,
    user_id: &str,
    session: Option<&SessionWrite>,
    now: i64,
) -> Result<bool, Error> {
    let applied = match session {
        Some(w) => apply_session_write(&txn, project_id, user_id, w, now).await,
        None => Ok(()),
    };
    settle(txn, applied.map(|()| true)).await
}

/// One email, phone number or TOTP of a user, as the union in [`load_users`] returns it.
#[derive(Debug, sea_orm::FromQueryResult)]
struct FactorRow {
    kind: String,
    user_id: String,
    id: String,
    value: String,
    verified: bool,
    created_at: i64,
}

/// Builds full users from rows, with one more query for the whole batch's emails, phone
/// numbers and usable TOTPs.
async fn load_users(
    conn: &DatabaseConnection,
    project_id: &str,
    rows: Vec<user::Model>,
    now: i64,
) -> Result<Vec<User>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|u| u.id.clone()).collect();
    // Emails, phone numbers and usable TOTPs of the whole batch in one round trip.
    let emails = user_email::Entity::find()
        .select_only()
        .column_as(Expr::val("e"), "kind")
        .column_as(user_email::Column::UserId, "user_id")
        .column_as(user_email::Column::Id, "id")
        .column_as(user_email::Column::Email, "value")
        .column_as(user_email::Column::Verified, "verified")
        .column_as(user_email::Column::CreatedAt, "created_at")
        .filter(user_email::Column::ProjectId.eq(project_id))
        .filter(user_email::Column::UserId.is_in(ids.clone()))
        .into_query();
    let phones = user_phone::Entity::find()
        .select_only()
        .column_as(Expr::val("p"), "kind")
        .column_as(user_phone::Column::UserId, "user_id")
        .column_as(user_phone::Column::Id, "id")
        .column_as(user_phone::Column::PhoneNumber, "value")
        .column_as(user_phone::Column::Verified, "verified")
        .column_as(user_phone::Column::CreatedAt, "created_at")
        .filter(user_phone::Column::ProjectId.eq(project_id))
        .filter(user_phone::Column::UserId.is_in(ids.clone()))
        .into_query();
    let totps = totp::Entity::find()
        .select_only()
        .column_as(Expr::val("t"), "kind")
        .column_as(totp::Column::UserId, "user_id")
        .column_as(totp::Column::Id, "id")
        .column_as(totp::Column::Id, "value")
        .column_as(totp::Column::Verified, "verified")
        .column_as(totp::Column::CreatedAt, "created_at")
        .filter(totp::Column::ProjectId.eq(project_id))
        .filter(totp::Column::UserId.is_in(ids))
        .filter(visible_totps(now))
        .into_query();
    let mut union = emails;
    union
        .union(sea_orm::sea_query::UnionType::All, phones)
        .union(sea_orm::sea_query::UnionType::All, totps);
    let mut factors = FactorRow::find_by_statement(conn.get_database_backend().build(&union))
        .all(conn)
        .await
        .map_err(db_err)?;
    factors.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    rows.into_iter()
        .map(|u| {
            let mine = factors.iter().filter(|f| f.user_id == u.id).map(|f| Factor {
                kind: &f.kind,
                id: &f.id,
                value: &f.value,
                verified: f.verified,
            });
            let mine: Vec<Factor<'_>> = mine.collect();
            to_user(u, &mine)
        })
        .collect()
}

/// One email (`e`), phone number (`p`) or usable TOTP (`t`) of a user, as the queries return it.
struct Factor<'a> {
    kind: &'a str,
    id: &'a str,
    value: &'a str,
    verified: bool,
}

/// The domain user from its row and its factors, in the order given.
fn to_user(u: user::Model, factors: &[Factor<'_>]) -> Result<User, Error> {
    let lock = match (u.lock_created_at, u.lock_expires_at) {
        (Some(created_at), Some(expires_at)) => Some(Lock {
            created_at,
            expires_at,
        }),
        _ => None,
    };
    let of = |kind: &'static str| factors.iter().filter(move |f| f.kind == kind);
    Ok(User {
        status: UserStatus::parse(&u.status)
            .ok_or_else(|| Error::internal(format!("user {} has status {:?}", u.id, u.status)))?,
        external_id: u.external_id,
        name: Name {
            first_name: u.first_name,
            middle_name: u.middle_name,
            last_name: u.last_name,
        },
        emails: of("e")
            .map(|e| Email {
                id: e.id.to_owned(),
                email: e.value.to_owned(),
                verified: e.verified,
            })
            .collect(),
        phone_numbers: of("p")
            .map(|p| PhoneNumber {
                id: p.id.to_owned(),
                phone_number: p.value.to_owned(),
                verified: p.verified,
            })
            .collect(),
        totps: of("t")
            .map(|t| TotpSummary {
                id: t.id.to_owned(),
                verified: t.verified,
            })
            .collect(),
        trusted_metadata: parse_object(&u.trusted_metadata)?,
        untrusted_metadata: parse_object(&u.untrusted_metadata)?,
        roles: serde_json::from_str(&u.roles).map_err(Error::internal)?,
        created_at: u.created_at,
        lock,
        id: u.id,
    })
}

/// `%value%` for LIKE, with the wildcards in the value escaped.
fn contains_pattern(v: &str) -> String {
    // `!` is the escape character: `\` would need per-backend string quoting.
    let escaped = v.replace('!', "!!").replace('%', "!%").replace('_', "!_");
    format!("%{escaped}%")
}

fn like(col: impl sea_orm::sea_query::IntoColumnRef, v: &str) -> Expr {
    Expr::expr(Func::lower(Expr::col(col))).like(LikeExpr::new(contains_pattern(v)).escape('!'))
}

/// Users of the project that have a row in a factor table matching `cond`.
fn having(
    project_id: &str,
    table: impl IntoTableRef,
    user_col: impl IntoColumnRef,
    project_col: impl IntoColumnRef,
    cond: Condition,
) -> Expr {
    user::Column::Id.in_subquery(
        Query::select()
            .column(user_col)
            .from(table)
            .cond_where(
                Condition::all()
                    .add(Expr::col(project_col).eq(project_id))
                    .add(cond),
            )
            .to_owned(),
    )
}

fn search_filter(project_id: &str, f: &Filter, now: i64) -> Condition {
    let emails = |c: Condition| {
        having(
            project_id,
            user_email::Entity,
            user_email::Column::UserId,
            user_email::Column::ProjectId,
            c,
        )
    };
    let phones = |c: Condition| {
        having(
            project_id,
            user_phone::Entity,
            user_phone::Column::UserId,
            user_phone::Column::ProjectId,
            c,
        )
    };
    let totps = |c: Condition| {
        having(
            project_id,
            totp::Entity,
            totp::Column::UserId,
            totp::Column::ProjectId,
            c.add(visible_totps(now)),
        )
    };
    let one = |e: Expr| Condition::all().add(e);
    match f {
        Filter::CreatedAfter(t) => one(user::Column::CreatedAt.gt(*t)),
        Filter::CreatedBefore(t) => one(user::Column::CreatedAt.lt(*t)),
        Filter::Status(s) => one(user::Column::Status.eq(s.as_str())),
        Filter::UserIds(ids) => one(user::Column::Id.is_in(ids.iter().map(String::as_str))),
        Filter::FullNameFuzzy(v) => {
            // "first last" and "first middle last", lower-cased, each part NULL-safe.
            let part = |c: user::Column| Expr::expr(Func::coalesce([Expr::col(c), Expr::val("")]));
            let cat = |a: Expr, b: Expr| {
                a.binary(BinOper::Custom("||"), Expr::val(" "))
                    .binary(BinOper::Custom("||"), b)
            };
            let first_last = cat(part(user::Column::FirstName), part(user::Column::LastName));
            let full = cat(
                cat(part(user::Column::FirstName), part(user::Column::MiddleName)),
                part(user::Column::LastName),
            );
            let pattern = || LikeExpr::new(contains_pattern(v)).escape('!');
            Condition::any()
                .add(Expr::expr(Func::lower(first_last)).like(pattern()))
                .add(Expr::expr(Func::lower(full)).like(pattern()))
        }
        Filter::Emails(v) => one(emails(
            Condition::all().add(user_email::Column::Email.is_in(v.iter().map(String::as_str))),
        )),
        Filter::EmailFuzzy(v) => one(emails(Condition::all().add(like(user_email::Column::Email, v)))),
        Filter::EmailIds(v) => one(emails(
            Condition::all().add(user_email::Column::Id.is_in(v.iter().map(String::as_str))),
        )),
        Filter::EmailVerified(b) => one(emails(Condition::all().add(user_email::Column::Verified.eq(*b)))),
        Filter::PhoneNumbers(v) => one(phones(
            Condition::all().add(user_phone::Column::PhoneNumber.is_in(v.iter().map(String::as_str))),
        )),
        Filter::PhoneFuzzy(v) => one(phones(
            Condition::all().add(like(user_phone::Column::PhoneNumber, v)),
        )),
        Filter::PhoneIds(v) => one(phones(
            Condition::all().add(user_phone::Column::Id.is_in(v.iter().map(String::as_str))),
        )),
        Filter::PhoneVerified(b) => one(phones(Condition::all().add(user_phone::Column::Verified.eq(*b)))),
        Filter::TotpIds(v) => one(totps(
            Condition::all().add(totp::Column::Id.is_in(v.iter().map(String::as_str))),
        )),
        Filter::TotpVerified(b) => one(totps(Condition::all().add(totp::Column::Verified.eq(*b)))),
    }
}

#[async_trait::async_trait]
impl domain::ports::Store for Db {
    async fn project_auth(&self, project_id: &str) -> Result<Option<(Project, Vec<Vec<u8>>)>, Error> {
        let Some(p) = project::Entity::find_by_id(project_id)
            .one(&self.conn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let env = domain::ids::Environment::parse(&p.environment).ok_or_else(|| {
            Error::internal(format!("project {} has environment {:?}", p.id, p.environment))
        })?;
        let secrets = project_secret::Entity::find()
            .filter(project_secret::Column::ProjectId.eq(project_id))
            .filter(project_secret::Column::RevokedAt.is_null())
            .all(&self.conn)
            .await
            .map_err(db_err)?;
        Ok(Some((
            Project {
                id: p.id,
                env,
                name: p.name,
            },
            secrets.into_iter().map(|s| s.secret_hash).collect(),
        )))
    }

    async fn insert_project(
        &self,
        p: &Project,
        secret_id: &str,
        secret_hash: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        let txn = self.write().await?;
        project::Entity::insert(project::ActiveModel {
            id: Set(p.id.clone()),
            name: Set(p.name.clone()),
            environment: Set(p.env.as_str().to_owned()),
            created_at: Set(now),
        })
        .exec(&txn)
        .await
        .map_err(db_err)?;
        project_secret::Entity::insert(project_secret::ActiveModel {
            id: Set(secret_id.to_owned()),
            project_id: Set(p.id.clone()),
            secret_hash: Set(secret_hash.to_vec()),
            created_at: Set(now),
            revoked_at: Set(None),
        })
        .exec(&txn)
        .await
        .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectInfo>, Error> {
        let projects = project::Entity::find()
            .order_by_asc(project::Column::CreatedAt)
            .order_by_asc(project::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err)?;
        let secrets = project_secret::Entity::find()
            .filter(project_secret::Column::RevokedAt.is_null())
            .order_by_asc(project_secret::Column::CreatedAt)
            .order_by_asc(project_secret::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err)?;
        projects
            .into_iter()
            .map(|p| {
                let env = domain::ids::Environment::parse(&p.environment).ok_or_else(|| {
                    Error::internal(format!("project {} has environment {:?}", p.id, p.environment))
                })?;
                Ok(ProjectInfo {
                    active_secrets: secrets
                        .iter()
                        .filter(|s| s.project_id == p.id)
                        .map(|s| (s.id.clone(), s.created_at))
                        .collect(),
                    created_at: p.created_at,
                    project: Project {
                        id: p.id,
                        env,
                        name: p.name,
                    },
                })
            })
            .collect()
    }

    async fn rename_project(&self, project_id: &str, name: &str) -> Result<bool, Error> {
        let r = project::Entity::update_many()
            .col_expr(project::Column::Name, Expr::value(name))
            .filter(project::Column::Id.eq(project_id))
            .exec(&self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected == 1)
    }

    async fn delete_project(&self, project_id: &str) -> Result<bool, Error> {
        let txn = self.write().await?;
        let result = async {
            // Children first, the project row last (its count says whether it existed).
            session::Entity::delete_many()
                .filter(session::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            totp::Entity::delete_many()
                .filter(totp::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            user_email::Entity::delete_many()
                .filter(user_email::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            user_phone::Entity::delete_many()
                .filter(user_phone::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            user::Entity::delete_many()
                .filter(user::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            signing_key::Entity::delete_many()
                .filter(signing_key::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            project_secret::Entity::delete_many()
                .filter(project_secret::Column::ProjectId.eq(project_id))
                .exec(&txn)
                .await?;
            project::Entity::delete_many()
                .filter(project::Column::Id.eq(project_id))
                .exec(&txn)
                .await
        }
        .await;
        Ok(settle(txn, result.map_err(db_err)).await?.rows_affected == 1)
    }

    async fn insert_secret(
        &self,
        project_id: &str,
        secret_id: &str,
        hash: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        project_secret::Entity::insert(project_secret::ActiveModel {
            id: Set(secret_id.to_owned()),
            project_id: Set(project_id.to_owned()),
            secret_hash: Set(hash.to_vec()),
            created_at: Set(now),
            revoked_at: Set(None),
        })
        .exec(&self.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn revoke_secret(
        &self,
        project_id: &str,
        secret_id: &str,
        now: i64,
    ) -> Result<SecretRevocation, Error> {
        let txn = self.write().await?;
        let result = async {
            // Touching the project row first serialises revocations of one project (Postgres
            // holds the row lock to the end; SQLite's write transaction is already exclusive),
            // so two revocations at once cannot leave it without a working secret.
            project::Entity::update_many()
                .col_expr(project::Column::Name, Expr::col(project::Column::Name))
                .filter(project::Column::Id.eq(project_id))
                .exec(&txn)
                .await?;
            let active = project_secret::Entity::find()
                .filter(project_secret::Column::ProjectId.eq(project_id))
                .filter(project_secret::Column::RevokedAt.is_null())
                .all(&txn)
                .await?;
            if !active.iter().any(|s| s.id == secret_id) {
                return Ok(SecretRevocation::NotFound);
            }
            if active.len() < 2 {
                return Ok(SecretRevocation::LastSecret);
            }
            project_secret::Entity::update_many()
                .col_expr(project_secret::Column::RevokedAt, Expr::value(now))
                .filter(project_secret::Column::Id.eq(secret_id))
                .filter(project_secret::Column::ProjectId.eq(project_id))
                .filter(project_secret::Column::RevokedAt.is_null())
                .exec(&txn)
                .await?;
            Ok::<_, DbErr>(SecretRevocation::Revoked)
        }
        .await;
        settle(txn, result.map_err(db_err)).await
    }

    async fn purge(&self, now: i64, sessions_before: i64, dry_run: bool) -> Result<PurgeCounts, Error> {
        let expired_pending = Condition::all()
            .add(totp::Column::Verified.eq(false))
            .add(totp::Column::ExpiresAt.is_not_null())
            .add(totp::Column::ExpiresAt.lte(now));
        let pending_ids = Query::select()
            .column(totp::Column::Id)
            .from(totp::Entity)
            .cond_where(expired_pending.clone())
            .to_owned();
        let codes = Condition::all().add(recovery_code::Column::TotpId.in_subquery(pending_ids));
        let ended = Condition::any()
            .add(session::Column::ExpiresAt.lte(sessions_before))
            .add(session::Column::RevokedAt.lte(sessions_before));
        if dry_run {
            return Ok(PurgeCounts {
                pending_totps: totp::Entity::find()
                    .filter(expired_pending)
                    .count(&self.conn)
                    .await
                    .map_err(db_err)?,
                recovery_codes: recovery_code::Entity::find()
                    .filter(codes)
                    .count(&self.conn)
                    .await
                    .map_err(db_err)?,
                sessions: session::Entity::find()
                    .filter(ended)
                    .count(&self.conn)
                    .await
                    .map_err(db_err)?,
            });
        }
        let txn = self.write().await?;
        let result = async {
            // Codes first: their TOTPs are how they are found.
            let recovery_codes = recovery_code::Entity::delete_many()
                .filter(codes)
                .exec(&txn)
                .await?
                .rows_affected;
            let pending_totps = totp::Entity::delete_many()
                .filter(expired_pending)
                .exec(&txn)
                .await?
                .rows_affected;
            let sessions = session::Entity::delete_many()
                .filter(ended)
                .exec(&txn)
                .await?
                .rows_affected;
            Ok::<_, DbErr>(PurgeCounts {
                pending_totps,
                recovery_codes,
                sessions,
            })
        }
        .await;
        settle(txn, result.map_err(db_err)).await
    }

    async fn sealed_batch(
        &self,
        kind: SealedKind,
        active: &str,
        limit: u64,
    ) -> Result<Vec<SealedRow>, Error> {
        Ok(match kind {
            SealedKind::TotpSecret => totp::Entity::find()
                .filter(totp::Column::SecretKeyId.ne(active))
                .limit(limit)
                .all(&self.conn)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(|t| SealedRow {
                    id: t.id,
                    sealed: Sealed {
                        key_id: t.secret_key_id,
                        bytes: t.secret_sealed,
                    },
                    index_key_id: None,
                })
                .collect(),
            SealedKind::RecoveryCode => recovery_code::Entity::find()
                .filter(
                    Condition::any()
                        .add(recovery_code::Column::CodeKeyId.ne(active))
                        .add(recovery_code::Column::IndexKeyId.ne(active)),
                )
                .limit(limit)
                .all(&self.conn)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(|c| SealedRow {
                    id: c.id,
                    sealed: Sealed {
                        key_id: c.code_key_id,
                        bytes: c.code_sealed,
                    },
                    index_key_id: Some(c.index_key_id),
                })
                .collect(),
            SealedKind::SigningKey => signing_key::Entity::find()
                .filter(signing_key::Column::PrivateKeyId.ne(active))
                .limit(limit)
                .all(&self.conn)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(|k| SealedRow {
                    id: k.kid,
                    sealed: Sealed {
                        key_id: k.private_key_id,
                        bytes: k.private_sealed,
                    },
                    index_key_id: None,
                })
                .collect(),
        })
    }

    async fn reseal(
        &self,
        kind: SealedKind,
        id: &str,
        old_key_id: &str,
        new: &Sealed,
        index: Option<(&str, &[u8])>,
    ) -> Result<bool, Error> {
        let r = match kind {
            SealedKind::TotpSecret => {
                totp::Entity::update_many()
                    .col_expr(totp::Column::SecretKeyId, Expr::value(new.key_id.as_str()))
                    .col_expr(totp::Column::SecretSealed, Expr::value(new.bytes.clone()))
                    .filter(totp::Column::Id.eq(id))
                    .filter(totp::Column::SecretKeyId.eq(old_key_id))
                    .exec(&self.conn)
                    .await
            }
            SealedKind::RecoveryCode => {
                let mut q = recovery_code::Entity::update_many()
                    .col_expr(recovery_code::Column::CodeKeyId, Expr::value(new.key_id.as_str()))
                    .col_expr(recovery_code::Column::CodeSealed, Expr::value(new.bytes.clone()))
                    .filter(recovery_code::Column::Id.eq(id))
                    .filter(recovery_code::Column::CodeKeyId.eq(old_key_id));
                if let Some((index_key_id, mac)) = index {
                    q = q
                        .col_expr(recovery_code::Column::IndexKeyId, Expr::value(index_key_id))
                        .col_expr(recovery_code::Column::CodeIndex, Expr::value(mac.to_vec()));
                }
                q.exec(&self.conn).await
            }
            SealedKind::SigningKey => {
                signing_key::Entity::update_many()
                    .col_expr(
                        signing_key::Column::PrivateKeyId,
                        Expr::value(new.key_id.as_str()),
                    )
                    .col_expr(signing_key::Column::PrivateSealed, Expr::value(new.bytes.clone()))
                    .filter(signing_key::Column::Kid.eq(id))
                    .filter(signing_key::Column::PrivateKeyId.eq(old_key_id))
                    .exec(&self.conn)
                    .await
            }
        }
        .map_err(unique_err)?;
        Ok(r.rows_affected == 1)
    }

    async fn count_projects(&self) -> Result<u64, Error> {
        project::Entity::find().count(&self.conn).await.map_err(db_err)
    }

    async fn insert_user(&self, project_id: &str, u: &NewUser) -> Result<(), Error> {
        let txn = self.write().await?;
        user::Entity::insert(user_row(project_id, u)?)
            .exec(&txn)
            .await
            .map_err(unique_err)?;
        if let Some(e) = email_row(project_id, u) {
            user_email::Entity::insert(e)
                .exec(&txn)
                .await
                .map_err(unique_err)?;
        }
        if let Some(ph) = phone_row(project_id, u) {
            user_phone::Entity::insert(ph)
                .exec(&txn)
                .await
                .map_err(unique_err)?;
        }
        txn.commit().await.map_err(db_err)
    }

    async fn load_user(
        &self,
        project_id: &str,
        r: &UserRef,
        now: i64,
        with: With<'_>,
    ) -> Result<Option<Loaded>, Error> {
        let stmt = bundle::statement(self.backend(), project_id, r, now, with);
        let Some(res) = self.conn.query_one_raw(stmt).await.map_err(db_err)? else {
            return Ok(None);
        };
        let mut row = bundle::Row::decode(&res)?;
        let totps = match with {
            With::TotpSecrets => row.take_totps(),
            _ => Vec::new(),
        };
        let codes = match with {
            With::UnusedCodes => row.take_codes(),
            _ => Vec::new(),
        };
        let found = match with {
            With::CodeByIndex(_) => row.found(),
            _ => None,
        };
        let bundle::Row {
            user: user_row,
            factors,
            ..
        } = row;
        let factors: Vec<Factor<'_>> = factors
            .iter()
            .map(|f| Factor {
                kind: &f.kind,
                id: &f.id,
                value: &f.value,
                verified: f.verified,
            })
            .collect();
        let user = to_user(user_row, &factors)?;
        Ok(Some(Loaded {
            user,
            totps,
            codes,
            found,
        }))
    }

    async fn search_users(
        &self,
        project_id: &str,
        search: &Search,
        now: i64,
    ) -> Result<(Vec<User>, u64), Error> {
        let mut matching = Condition::all().add(user::Column::ProjectId.eq(project_id));
        if !search.filters.is_empty() {
            let mut f = if search.all {
                Condition::all()
            } else {
                Condition::any()
            };
            for filter in &search.filters {
                f = f.add(search_filter(project_id, filter, now));
            }
            matching = matching.add(f);
        }
        let total = user::Entity::find()
            .filter(matching.clone())
            .count(&self.conn)
            .await
            .map_err(db_err)?;
        let mut page = user::Entity::find().filter(matching);
        if let Some((at, id)) = &search.after {
            page = page.filter(
                Condition::any().add(user::Column::CreatedAt.gt(*at)).add(
                    Condition::all()
                        .add(user::Column::CreatedAt.eq(*at))
                        .add(user::Column::Id.gt(id.as_str())),
                ),
            );
        }
        let rows = page
            .order_by_asc(user::Column::CreatedAt)
            .order_by_asc(user::Column::Id)
            .limit(search.limit)
            .all(&self.conn)
            .await
            .map_err(db_err)?;
        Ok((load_users(&self.conn, project_id, rows, now).await?, total))
    }

    async fn update_user(
        &self,
        project_id: &str,
        user_id: &str,
        patch: &UserPatch,
        now: i64,
    ) -> Result<(), Error> {
        let txn = self.write().await?;
        touch_user(&txn, project_id, user_id, now).await?;
        let current = user::Entity::find_by_id(user_id)
            .filter(user::Column::ProjectId.eq(project_id))
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or(Error::UserNotFound)?;
        let mut am: user::ActiveModel = current.clone().into();
        if let Some(n) = &patch.name {
            // A name field sent as null or left out keeps its value (spec §1.4).
            if n.first_name.is_some() {
                am.first_name = Set(n.first_name.clone());
            }
            if n.middle_name.is_some() {
                am.middle_name = Set(n.middle_name.clone());
            }
            if n.last_name.is_some() {
                am.last_name = Set(n.last_name.clone());
            }
        }
        if let Some(ext) = &patch.external_id {
            am.external_id = Set(Some(ext.clone()));
        }
        for (patch_meta, current_meta, slot) in [
            (
                &patch.trusted_metadata,
                &current.trusted_metadata,
                &mut am.trusted_metadata,
            ),
            (
                &patch.untrusted_metadata,
                &current.untrusted_metadata,
                &mut am.untrusted_metadata,
            ),
        ] {
            if let Some(p) = patch_meta {
                let mut merged = parse_object(current_meta)?;
                domain::validate::merge_metadata(&mut merged, p);
                domain::validate::metadata(&merged)?;
                *slot = Set(to_json(&merged)?);
            }
        }
        if let Some(r) = &patch.roles {
            am.roles = Set(to_json(r)?);
        }
        user::Entity::update(am).exec(&txn).await.map_err(unique_err)?;
        txn.commit().await.map_err(db_err)
    }

    async fn unlock_user(&self, project_id: &str, user_id: &str) -> Result<bool, Error> {
        let r = user::Entity::update_many()
            .col_expr(user::Column::FailedAttempts, Expr::value(0))
            .col_expr(user::Column::LockCreatedAt, Expr::value(Option::<i64>::None))
            .col_expr(user::Column::LockExpiresAt, Expr::value(Option::<i64>::None))
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::ProjectId.eq(project_id))
            .exec(&self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected == 1)
    }

    async fn delete_user(&self, project_id: &str, user_id: &str) -> Result<bool, Error> {
        let txn = self.write().await?;
        // Lock order everywhere: user, then TOTP, then sessions (no deadlock cycles). The row is
        // deleted below, so the timestamp this writes is moot.
        if let Err(e) = touch_user(&txn, project_id, user_id, 0).await {
            txn.rollback().await.map_err(db_err)?;
            return match e {
                Error::UserNotFound => Ok(false),
                e => Err(e),
            };
        }
        session::Entity::delete_many()
            .filter(session::Column::ProjectId.eq(project_id))
            .filter(session::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::ProjectId.eq(project_id))
            .filter(recovery_code::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        totp::Entity::delete_many()
            .filter(totp::Column::ProjectId.eq(project_id))
            .filter(totp::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        user_email::Entity::delete_many()
            .filter(user_email::Column::ProjectId.eq(project_id))
            .filter(user_email::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        user_phone::Entity::delete_many()
            .filter(user_phone::Column::ProjectId.eq(project_id))
            .filter(user_phone::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        let r = user::Entity::delete_many()
            .filter(user::Column::ProjectId.eq(project_id))
            .filter(user::Column::Id.eq(user_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(r.rows_affected == 1)
    }

    async fn record_failure(
        &self,
        project_id: &str,
        user_id: &str,
        now: i64,
        policy: LockPolicy,
    ) -> Result<FailureOutcome, Error> {
        let until = now + policy.lock_secs;
        let next = Expr::col(user::Column::FailedAttempts).add(1);
        let locks = Expr::col(user::Column::FailedAttempts)
            .add(1)
            .gte(i64::from(policy.max_failures));
        // One conditional write, its own transaction: count the failure and, at the limit, set
        // the lock and start the counter again; a user already locked is left alone (R-RC-2).
        // RETURNING reads the row as this write left it.
        let mut q = user::Entity::update_many()
            .col_expr(
                user::Column::FailedAttempts,
                CaseStatement::new().case(locks.clone(), 0).finally(next).into(),
            )
            .col_expr(
                user::Column::LockCreatedAt,
                CaseStatement::new()
                    .case(locks.clone(), now)
                    .finally(Expr::col(user::Column::LockCreatedAt))
                    .into(),
            )
            .col_expr(
                user::Column::LockExpiresAt,
                CaseStatement::new()
                    .case(locks, until)
                    .finally(Expr::col(user::Column::LockExpiresAt))
                    .into(),
            )
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::ProjectId.eq(project_id))
            .filter(unlocked(now))
            .into_query();
        q.returning(Query::returning().columns([user::Column::FailedAttempts, user::Column::LockExpiresAt]));
        // All rows, so SQLite steps the statement to its end (and commits) before we go on.
        let queued = self.queue().await;
        let written = self
            .conn
            .query_all_raw(self.backend().build(&q))
            .await
            .map_err(db_err)?;
        drop(queued);
        if let Some(row) = written.first() {
            let failed: i64 = row.try_get("", "failed_attempts").map_err(Error::internal)?;
            let lock: Option<i64> = row.try_get("", "lock_expires_at").map_err(Error::internal)?;
            // A counter back at zero means this write set the lock.
            return Ok(match lock {
                Some(until) if failed == 0 && until > now => FailureOutcome::LockedNow(until),
                _ => FailureOutcome::Counted,
            });
        }
        // No row changed: the user was already locked (by a concurrent failure), or is gone.
        let after = user::Entity::find_by_id(user_id)
            .filter(user::Column::ProjectId.eq(project_id))
            .one(&self.conn)
            .await
            .map_err(db_err)?;
        Ok(match after.and_then(|u| u.lock_expires_at) {
            Some(until) if until > now => FailureOutcome::AlreadyLocked(until),
            _ => FailureOutcome::Counted,
        })
    }

    async fn insert_totp(&self, project_id: &str, t: &NewTotp, now: i64) -> Result<(), Error> {
        let txn = self.write().await?;
        touch_user(&txn, project_id, &t.user_id, now).await?;
        let verified = totp::Entity::find()
            .filter(totp::Column::ProjectId.eq(project_id))
            .filter(totp::Column::UserId.eq(t.user_id.as_str()))
            .filter(totp::Column::Verified.eq(true))
            .count(&txn)
            .await
            .map_err(db_err)?;
        if verified > 0 {
            return Err(Error::ActiveTotpExists);
        }
        // A new create replaces a pending TOTP (spec §5.2) and purges expired ones.
        let pending: Vec<String> = totp::Entity::find()
            .filter(totp::Column::ProjectId.eq(project_id))
            .filter(totp::Column::UserId.eq(t.user_id.as_str()))
            .filter(totp::Column::Verified.eq(false))
            .all(&txn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| m.id)
            .collect();
        if !pending.is_empty() {
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::ProjectId.eq(project_id))
                .filter(recovery_code::Column::TotpId.is_in(pending.clone()))
                .exec(&txn)
                .await
                .map_err(db_err)?;
            totp::Entity::delete_many()
                .filter(totp::Column::ProjectId.eq(project_id))
                .filter(totp::Column::Id.is_in(pending))
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        totp::Entity::insert(totp_row(project_id, t, false))
            .exec(&txn)
            .await
            .map_err(unique_err)?;
        recovery_code::Entity::insert_many(code_rows(project_id, t))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }

    async fn accept_totp_step(
        &self,
        project_id: &str,
        user_id: &str,
        totp_id: &str,
        step: i64,
        now: i64,
        session: Option<&SessionWrite>,
    ) -> Result<bool, Error> {
        let who = Who {
            project_id,
            user_id,
            now,
        };
        self.succeed(who, Single::Step { totp_id, step }, session).await
    }

    async fn spend_recovery_code(
        &self,
        project_id: &str,
        user_id: &str,
        code_id: &str,
        now: i64,
        session: Option<&SessionWrite>,
    ) -> Result<bool, Error> {
        let who = Who {
            project_id,
            user_id,
            now,
        };
        self.succeed(who, Single::Code { code_id }, session).await
    }

    async fn signing_keys(&self, project_id: &str) -> Result<Vec<StoredSigningKey>, Error> {
        Ok(signing_key::Entity::find()
            .filter(signing_key::Column::ProjectId.eq(project_id))
            .order_by_desc(signing_key::Column::CreatedAt)
            .order_by_desc(signing_key::Column::Kid)
            .all(&self.conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|k| StoredSigningKey {
                public: domain::jwt::PublicJwk {
                    kid: k.kid,
                    n: k.n,
                    e: k.e,
                },
                private: Sealed {
                    key_id: k.private_key_id,
                    bytes: k.private_sealed,
                },
                created_at: k.created_at,
            })
            .collect())
    }

    async fn insert_signing_key(&self, project_id: &str, k: &StoredSigningKey) -> Result<(), Error> {
        signing_key::Entity::insert(signing_key::ActiveModel {
            kid: Set(k.public.kid.clone()),
            project_id: Set(project_id.to_owned()),
            n: Set(k.public.n.clone()),
            e: Set(k.public.e.clone()),
            private_key_id: Set(k.private.key_id.clone()),
            private_sealed: Set(k.private.bytes.clone()),
            created_at: Set(k.created_at),
        })
        .exec(&self.conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_session(
        &self,
        project_id: &str,
        by: &SessionLookup,
        now: i64,
    ) -> Result<Option<Session>, Error> {
        let q = session::Entity::find()
            .filter(session::Column::ProjectId.eq(project_id))
            .filter(live_sessions(now));
        let q = match by {
            SessionLookup::Id(id) => q.filter(session::Column::Id.eq(id.as_str())),
            SessionLookup::TokenHash(h) => q.filter(session::Column::TokenHash.eq(h.clone())),
        };
        q.one(&self.conn)
            .await
            .map_err(db_err)?
            .map(to_session)
            .transpose()
    }

    async fn list_sessions(&self, project_id: &str, user_id: &str, now: i64) -> Result<Vec<Session>, Error> {
        session::Entity::find()
            .filter(session::Column::ProjectId.eq(project_id))
            .filter(session::Column::UserId.eq(user_id))
            .filter(live_sessions(now))
            .order_by_desc(session::Column::StartedAt)
            .order_by_desc(session::Column::Id)
            .all(&self.conn)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_session)
            .collect()
    }

    async fn touch_session(
        &self,
        project_id: &str,
        session_id: &str,
        now: i64,
        expires_at: Option<i64>,
        custom_claims: Option<&Map<String, Value>>,
    ) -> Result<Option<Session>, Error> {
        let txn = self.write().await?;
        let updated = update_live_session(&txn, project_id, session_id, None, now, |s| {
            if let Some(e) = expires_at {
                s.expires_at = e;
            }
            if let Some(c) = custom_claims {
                domain::validate::merge_metadata(&mut s.custom_claims, c);
            }
        })
        .await?;
        txn.commit().await.map_err(db_err)?;
        Ok(updated)
    }

    async fn revoke_session(&self, project_id: &str, session_id: &str, now: i64) -> Result<bool, Error> {
        let r = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::ProjectId.eq(project_id))
            .filter(live_sessions(now))
            .exec(&self.conn)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected == 1)
    }

    async fn delete_totp(&self, project_id: &str, totp_id: &str, now: i64) -> Result<Option<String>, Error> {
        let txn = self.write().await?;
        let Some(t) = totp::Entity::find_by_id(totp_id)
            .filter(totp::Column::ProjectId.eq(project_id))
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            txn.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        // The TOTP row first (lock order: user, TOTP, sessions), then what hangs off it.
        let r = totp::Entity::delete_many()
            .filter(totp::Column::ProjectId.eq(project_id))
            .filter(totp::Column::Id.eq(totp_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if r.rows_affected != 1 {
            txn.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::ProjectId.eq(project_id))
            .filter(recovery_code::Column::TotpId.eq(totp_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        // R-A-5: the sessions this factor built end with it.
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::ProjectId.eq(project_id))
            .filter(session::Column::TotpId.eq(totp_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(Some(t.user_id))
    }
}
