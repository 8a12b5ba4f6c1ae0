//! The writes of a successful authentication (spec §5.5, R-RC-1): take the user's row lock if
//! the user is not locked, make the factor's single-use write (the step compare-and-set, or
//! `used_at IS NULL` for a recovery code), then start the failure counter again and activate a
//! pending user. Either all of it happens or none of it. The user row is written only when its
//! counter or status changes: the usual success (an active user with no failures) locks it and
//! leaves it as it is, a row version and its WAL fewer.
//!
//! On Postgres the three writes are one statement (data-modifying CTEs, in lock order user then
//! factor), so without a session to write the whole success is one round trip in its own
//! transaction; with one, the statement and the session write share a transaction. On SQLite
//! they are separate statements inside a `BEGIN IMMEDIATE` transaction.

use crate::entity::{recovery_code, totp, user};
use crate::{Db, db_err, finish_success, unique_err, unlocked, visible_totps};
use domain::Error;
use domain::model::UserStatus;
use domain::session::SessionWrite;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter,
    Statement,
};

/// The factor's single-use write.
#[derive(Clone, Copy)]
pub(crate) enum Single<'a> {
    /// Moves the TOTP's last used step forward to `step` (and marks it verified).
    Step { totp_id: &'a str, step: i64 },
    /// Marks the recovery code used.
    Code { code_id: &'a str },
}

/// Whose success it is.
#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) project_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) now: i64,
}

impl Db {
    /// Applies a success: true when it happened, false when the single-use write found the
    /// step or code already taken. `UserLocked` / `UserNotFound` when the user row could not
    /// be claimed; `TotpsNotFoundForUser` when the TOTP went away.
    pub(crate) async fn succeed(
        &self,
        who: Who<'_>,
        single: Single<'_>,
        session: Option<&SessionWrite>,
    ) -> Result<bool, Error> {
        let postgres = self.backend() == DatabaseBackend::Postgres;
        if postgres && session.is_none() {
            // One statement: its own transaction, one round trip.
            return if claim_and_write_pg(&self.conn, who, single).await? {
                Ok(true)
            } else {
                not_written(&self.conn, who, single).await
            };
        }
        let _queued = self.queue().await;
        let txn = self.write().await?;
        let written = if postgres {
            claim_and_write_pg(&txn, who, single).await
        } else {
            claim_and_write(&txn, who, single).await
        };
        match written {
            Ok(true) => finish_success(txn, who.project_id, who.user_id, session, who.now).await,
            Ok(false) => {
                let outcome = not_written(&txn, who, single).await;
                txn.rollback().await.map_err(db_err)?;
                outcome
            }
            Err(e) => {
                txn.rollback().await.map_err(db_err)?;
                Err(e)
            }
        }
    }
}

/// Postgres: the claim, the single-use write and the success update as one statement. The
/// write's `EXISTS (SELECT 1 FROM claimed)` is a one-time filter, so the user row is locked
/// before the factor's; the final update runs only if the write changed a row.
async fn claim_and_write_pg(
    conn: &impl ConnectionTrait,
    who: Who<'_>,
    single: Single<'_>,
) -> Result<bool, Error> {
    let (write, id, value): (&str, &str, sea_orm::Value) = match single {
        Single::Step { totp_id, step } => (
            "UPDATE totps SET last_used_step = $5, verified = TRUE, expires_at = NULL \
             WHERE id = $4 AND project_id = $2 AND user_id = $1 \
               AND (verified OR expires_at > $3) \
               AND (last_used_step IS NULL OR last_used_step < $5)",
            totp_id,
            step.into(),
        ),
        Single::Code { code_id } => (
            "UPDATE recovery_codes SET used_at = $5 \
             WHERE id = $4 AND project_id = $2 AND user_id = $1 AND used_at IS NULL",
            code_id,
            who.now.into(),
        ),
    };
    let sql = format!(
        "WITH claimed AS ( \
           SELECT id FROM users WHERE id = $1 AND project_id = $2 \
             AND (lock_expires_at IS NULL OR lock_expires_at <= $3) FOR NO KEY UPDATE), \
         written AS ({write} AND EXISTS (SELECT 1 FROM claimed) RETURNING 1), \
         settled AS ( \
           UPDATE users SET failed_attempts = 0, status = $6, updated_at = $3 \
           WHERE id = $1 AND project_id = $2 AND (failed_attempts <> 0 OR status <> $6) \
             AND EXISTS (SELECT 1 FROM written) RETURNING 1) \
         SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT count(*) FROM written) AS written"
    );
    let stmt = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [
            who.user_id.into(),
            who.project_id.into(),
            who.now.into(),
            id.into(),
            value,
            UserStatus::Active.as_str().into(),
        ],
    );
    let row = conn
        .query_one_raw(stmt)
        .await
        .map_err(unique_err)?
        .ok_or_else(|| Error::internal("the success statement returned no row"))?;
    let count = |col: &str| row.try_get::<i64>("", col).map_err(Error::internal);
    if count("claimed")? != 1 {
        return Err(why_unclaimed(conn, who).await);
    }
    Ok(count("written")? == 1)
}

/// SQLite (inside `BEGIN IMMEDIATE`): the same writes, one statement each.
async fn claim_and_write(
    txn: &sea_orm::DatabaseTransaction,
    who: Who<'_>,
    single: Single<'_>,
) -> Result<bool, Error> {
    let active = UserStatus::Active.as_str();
    let claimed = user::Entity::update_many()
        .col_expr(user::Column::FailedAttempts, Expr::value(0))
        .col_expr(user::Column::Status, Expr::value(active))
        // As on Postgres, the row counts as changed only if the counter or the status did.
        .col_expr(
            user::Column::UpdatedAt,
            Expr::cust_with_values(
                "CASE WHEN failed_attempts <> 0 OR status <> ? THEN ? ELSE updated_at END",
                [sea_orm::Value::from(active), sea_orm::Value::from(who.now)],
            ),
        )
        .filter(user::Column::Id.eq(who.user_id))
        .filter(user::Column::ProjectId.eq(who.project_id))
        .filter(unlocked(who.now))
        .exec(txn)
        .await
        .map_err(db_err)?;
    if claimed.rows_affected != 1 {
        return Err(why_unclaimed(txn, who).await);
    }
    let written = match single {
        // The compare-and-set of spec §5.5: the step only moves forward, once.
        Single::Step { totp_id, step } => totp::Entity::update_many()
            .col_expr(totp::Column::LastUsedStep, Expr::value(step))
            .col_expr(totp::Column::Verified, Expr::value(true))
            .col_expr(totp::Column::ExpiresAt, Expr::value(Option::<i64>::None))
            .filter(totp::Column::Id.eq(totp_id))
            .filter(totp::Column::ProjectId.eq(who.project_id))
            .filter(totp::Column::UserId.eq(who.user_id))
            .filter(visible_totps(who.now))
            .filter(
                Condition::any()
                    .add(totp::Column::LastUsedStep.is_null())
                    .add(totp::Column::LastUsedStep.lt(step)),
            )
            .exec(txn)
            .await
            .map_err(unique_err)?,
        // R-RC-1: exactly one request can move used_at from NULL.
        Single::Code { code_id } => recovery_code::Entity::update_many()
            .col_expr(recovery_code::Column::UsedAt, Expr::value(who.now))
            .filter(recovery_code::Column::Id.eq(code_id))
            .filter(recovery_code::Column::ProjectId.eq(who.project_id))
            .filter(recovery_code::Column::UserId.eq(who.user_id))
            .filter(recovery_code::Column::UsedAt.is_null())
            .exec(txn)
            .await
            .map_err(db_err)?,
    };
    Ok(written.rows_affected == 1)
}

/// Why the user row could not be claimed: locked (until when) or gone.
async fn why_unclaimed(conn: &impl ConnectionTrait, who: Who<'_>) -> Error {
    let found = user::Entity::find_by_id(who.user_id)
        .filter(user::Column::ProjectId.eq(who.project_id))
        .one(conn)
        .await;
    match found {
        Ok(found) => match found.and_then(|u| u.lock_expires_at) {
            Some(until) if until > who.now => Error::user_locked(until, who.now),
            _ => Error::UserNotFound,
        },
        Err(e) => db_err(e),
    }
}

/// The single-use write changed nothing: a replay, unless the TOTP vanished or expired
/// meanwhile (not the client's fault, and not counted as a failure).
async fn not_written(conn: &impl ConnectionTrait, who: Who<'_>, single: Single<'_>) -> Result<bool, Error> {
    let Single::Step { totp_id, .. } = single else {
        return Ok(false);
    };
    let still_there = totp::Entity::find_by_id(totp_id)
        .filter(totp::Column::ProjectId.eq(who.project_id))
        .filter(visible_totps(who.now))
        .count(conn)
        .await
        .map_err(db_err)?;
    if still_there == 1 {
        Ok(false)
    } else {
        Err(Error::TotpsNotFoundForUser)
    }
}
