//! One statement for a user and everything a request needs with it (issue 8): the user row, its
//! emails, phone numbers and usable TOTPs, and, as asked, the TOTPs' sealed secrets, the unused
//! recovery codes, or the recovery code found by its index. The factors travel as one JSON array
//! per row kind (`json_agg` on Postgres, `json_group_array` on SQLite), so a request that used
//! to take three or four round trips takes one.
//!
//! The SQL text depends only on the backend, the kind of user reference and what is asked for,
//! so sqlx's per-connection statement cache prepares each shape once.

use crate::entity::user;
use domain::Error;
use domain::crypto::Sealed;
use domain::ids::UserRef;
use domain::model::{FoundRecoveryCode, StoredRecoveryCode, StoredTotp};
use domain::ports::With;
use sea_orm::{DatabaseBackend, Iden, Iterable, QueryResult, Statement, Value};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// `encode(col, 'hex')` / `hex(col)`: sealed bytes inside JSON.
fn hex(backend: DatabaseBackend, col: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("encode({col}, 'hex')"),
        _ => format!("hex({col})"),
    }
}

/// A JSON array of the rows of `from`, each row an array of the named columns in their order
/// (the row structs below read them by position). Arrays, not objects: on Postgres
/// `json_agg` of a whole row looks its type up for every row, which made the ten recovery
/// codes cost more than the rest of the statement.
fn json_rows(backend: DatabaseBackend, cols: &[&str], from: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => {
            let cols: Vec<String> = cols.iter().map(|c| format!("f.{c}")).collect();
            format!(
                "(SELECT coalesce(json_agg(json_build_array({})), '[]')::text FROM ({from}) f)",
                cols.join(", ")
            )
        }
        _ => format!(
            "(SELECT json_group_array(json_array({})) FROM ({from}))",
            cols.join(", ")
        ),
    }
}

/// The statement: parameters are `$1` project, `$2` user id or external id, `$3` now, then
/// the index candidates. (sqlx binds `$N` by its number on SQLite too.) Its text is built once
/// per shape and kept: formatting it cost about a tenth of a `recovery_codes` request's
/// instructions (issue 8, `cargo xtask bench --callgrind`).
pub(crate) fn statement(
    backend: DatabaseBackend,
    project_id: &str,
    r: &UserRef,
    now: i64,
    with: With<'_>,
) -> Statement {
    let (external, user) = match r {
        UserRef::Id(id) => (false, id),
        UserRef::External(ext) => (true, ext),
    };
    let mut values: Vec<Value> = vec![project_id.into(), user.as_str().into(), now.into()];
    if let With::CodeByIndex(candidates) = with {
        values.extend(candidates.iter().map(|c| Value::from(c.clone())));
    }
    let shape = Shape {
        postgres: backend == DatabaseBackend::Postgres,
        external,
        with: match with {
            With::Nothing => 0,
            With::TotpSecrets => 1,
            With::UnusedCodes => 2,
            With::CodeByIndex(c) => 3 + c.len(),
        },
    };
    static TEXTS: LazyLock<Mutex<HashMap<Shape, Arc<str>>>> = LazyLock::new(Default::default);
    let cached = TEXTS.lock().ok().and_then(|t| t.get(&shape).cloned());
    let sql = cached.unwrap_or_else(|| {
        let sql: Arc<str> = sql(backend, external, with).into();
        if let Ok(mut t) = TEXTS.lock() {
            t.insert(shape, sql.clone());
        }
        sql
    });
    Statement::from_sql_and_values(backend, sql.as_ref(), values)
}

/// What the statement's text depends on: the backend, the kind of user reference, and what is
/// read with the user (with the number of index candidates).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    postgres: bool,
    external: bool,
    with: usize,
}

/// The statement's text for one shape.
fn sql(backend: DatabaseBackend, external: bool, with: With<'_>) -> String {
    let secrets = with == With::TotpSecrets;
    // NULLs are typed (in the union's first branch) so Postgres resolves the column types.
    let null_text = if backend == DatabaseBackend::Postgres {
        "NULL::text"
    } else {
        "NULL"
    };
    let (key_id, sealed) = if secrets {
        ("t.secret_key_id".to_owned(), hex(backend, "t.secret_sealed"))
    } else {
        (null_text.to_owned(), null_text.to_owned())
    };
    let mut union = format!(
        "SELECT 't' AS kind, t.id AS id, t.id AS value, t.verified AS verified, \
                t.created_at AS created_at, {key_id} AS key_id, {sealed} AS sealed, \
                t.expires_at AS expires_at \
         FROM totps t WHERE t.project_id = u.project_id AND t.user_id = u.id \
           AND (t.verified OR t.expires_at > $3)"
    );
    // `recovery_codes` answers with the TOTPs alone, so it skips two index scans.
    if with != With::UnusedCodes {
        union.push_str(
            " UNION ALL \
             SELECT 'e', e.id, e.email, e.verified, e.created_at, NULL, NULL, NULL \
             FROM user_emails e WHERE e.project_id = u.project_id AND e.user_id = u.id \
             UNION ALL \
             SELECT 'p', ph.id, ph.phone_number, ph.verified, ph.created_at, NULL, NULL, NULL \
             FROM user_phone_numbers ph WHERE ph.project_id = u.project_id AND ph.user_id = u.id",
        );
    }
    let factors = json_rows(
        backend,
        &[
            "kind",
            "id",
            "value",
            "verified",
            "created_at",
            "key_id",
            "sealed",
            "expires_at",
        ],
        &union,
    );
    let by = if external { "external_id" } else { "id" };
    // The user's codes; which of them belong to a usable TOTP is decided against the factors
    // above (joining back to `totps` here cost more than the rest of the statement).
    let codes = |sealed: &str, filter: &str| {
        json_rows(
            backend,
            &["id", "totp_id", "key_id", "sealed", "position", "used"],
            &format!(
                "SELECT c.id AS id, c.totp_id AS totp_id, {sealed}, c.position AS position, \
                        (c.used_at IS NOT NULL) AS used \
                 FROM recovery_codes c \
                 WHERE c.project_id = u.project_id AND c.user_id = u.id AND {filter}"
            ),
        )
    };
    let codes = match with {
        With::UnusedCodes => codes(
            &format!(
                "c.code_key_id AS key_id, {} AS sealed",
                hex(backend, "c.code_sealed")
            ),
            "c.used_at IS NULL",
        ),
        With::CodeByIndex(candidates) if !candidates.is_empty() => {
            let params: Vec<String> = (0..candidates.len()).map(|i| format!("${}", i + 4)).collect();
            codes(
                &format!("{null_text} AS key_id, {null_text} AS sealed"),
                &format!("c.code_index IN ({}) LIMIT 1", params.join(", ")),
            )
        }
        _ => "NULL".to_owned(),
    };
    format!(
        "SELECT {}, {factors} AS factors, {codes} AS codes \
         FROM users u WHERE u.project_id = $1 AND u.{by} = $2",
        user_columns()
    )
}

/// The user's columns, `u.id, u.project_id, …`, in the entity's order, so that each sits at its
/// `user::Column` discriminant: [`user_at`] reads them by position, because sea-orm's lookup by
/// name formats each column's name into a new `String`.
fn user_columns() -> String {
    let cols: Vec<String> = user::Column::iter()
        .map(|c| format!("u.{}", c.to_string()))
        .collect();
    cols.join(", ")
}

/// The user row from the statement's first columns ([`user_columns`]).
fn user_at(res: &QueryResult) -> Result<user::Model, sea_orm::DbErr> {
    use user::Column as C;
    let at = |c: C| c as usize;
    Ok(user::Model {
        id: res.try_get_by_index(at(C::Id))?,
        project_id: res.try_get_by_index(at(C::ProjectId))?,
        external_id: res.try_get_by_index(at(C::ExternalId))?,
        status: res.try_get_by_index(at(C::Status))?,
        first_name: res.try_get_by_index(at(C::FirstName))?,
        middle_name: res.try_get_by_index(at(C::MiddleName))?,
        last_name: res.try_get_by_index(at(C::LastName))?,
        trusted_metadata: res.try_get_by_index(at(C::TrustedMetadata))?,
        untrusted_metadata: res.try_get_by_index(at(C::UntrustedMetadata))?,
        roles: res.try_get_by_index(at(C::Roles))?,
        failed_attempts: res.try_get_by_index(at(C::FailedAttempts))?,
        lock_created_at: res.try_get_by_index(at(C::LockCreatedAt))?,
        lock_expires_at: res.try_get_by_index(at(C::LockExpiresAt))?,
        created_at: res.try_get_by_index(at(C::CreatedAt))?,
        updated_at: res.try_get_by_index(at(C::UpdatedAt))?,
    })
}

/// `true`/`false` on Postgres, `1`/`0` on SQLite. A visitor, not an untagged enum: an untagged
/// enum buffers each value and, on SQLite, built an error message for the `bool` it did not
/// find before it tried the integer: eleven times per `recovery_codes` request, 6 % of its
/// instructions (issue 8, `cargo xtask bench --backend sqlite --callgrind`).
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean or 0/1")
        }
        fn visit_bool<E>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }
        fn visit_i64<E>(self, i: i64) -> Result<bool, E> {
            Ok(i != 0)
        }
        fn visit_u64<E>(self, i: u64) -> Result<bool, E> {
            Ok(i != 0)
        }
    }
    d.deserialize_any(V)
}

/// Sealed bytes, sent as hex inside the JSON (`encode(…, 'hex')` is lowercase, SQLite's
/// `hex()` uppercase) and decoded straight from the JSON text, without a `String` between.
#[derive(Debug)]
struct Hex(Vec<u8>);

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hex, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Hex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Hex, E> {
                data_encoding::HEXLOWER_PERMISSIVE
                    .decode(s.as_bytes())
                    .map(Hex)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// One email, phone number or TOTP of the user: its fields in the order of the statement's
/// columns (it arrives as a JSON array).
#[derive(Debug, Deserialize)]
pub(crate) struct FactorRow {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) value: String,
    #[serde(deserialize_with = "flag")]
    pub(crate) verified: bool,
    pub(crate) created_at: i64,
    key_id: Option<String>,
    sealed: Option<Hex>,
    expires_at: Option<i64>,
}

/// One recovery code: its fields in the order of the statement's columns.
#[derive(Debug, Deserialize)]
struct CodeRow {
    id: String,
    totp_id: String,
    key_id: Option<String>,
    sealed: Option<Hex>,
    position: i64,
    #[serde(deserialize_with = "flag")]
    used: bool,
}

/// What one bundle row holds.
pub(crate) struct Row {
    pub(crate) user: user::Model,
    pub(crate) factors: Vec<FactorRow>,
    codes: Vec<CodeRow>,
}

impl Row {
    pub(crate) fn decode(res: &QueryResult) -> Result<Row, Error> {
        let user = user_at(res).map_err(Error::internal)?;
        let n = user::Column::iter().count();
        let factors: String = res.try_get_by_index(n).map_err(Error::internal)?;
        let codes: Option<String> = res.try_get_by_index(n + 1).map_err(Error::internal)?;
        let mut factors: Vec<FactorRow> = serde_json::from_str(&factors).map_err(Error::internal)?;
        factors.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut codes: Vec<CodeRow> = match codes {
            Some(c) => serde_json::from_str(&c).map_err(Error::internal)?,
            None => Vec::new(),
        };
        codes.sort_by_key(|c| c.position);
        Ok(Row { user, factors, codes })
    }

    /// Usable TOTPs with their sealed secrets (taken out of the row): verified first, then
    /// newest first.
    pub(crate) fn take_totps(&mut self) -> Vec<StoredTotp> {
        let user_id = &self.user.id;
        let mut totps: Vec<StoredTotp> = self
            .factors
            .iter_mut()
            .filter(|f| f.kind == "t")
            .filter_map(|f| match (f.key_id.take(), f.sealed.take()) {
                (Some(key_id), Some(Hex(bytes))) => Some(StoredTotp {
                    id: f.id.clone(),
                    user_id: user_id.clone(),
                    verified: f.verified,
                    secret: Sealed { key_id, bytes },
                    expires_at: f.expires_at,
                    created_at: f.created_at,
                }),
                _ => None,
            })
            .collect();
        totps.sort_by_key(|t| std::cmp::Reverse((t.verified, t.created_at)));
        totps
    }

    /// The usable TOTP with this id, if any: `Some(verified)`.
    fn usable_totp(&self, totp_id: &str) -> Option<bool> {
        self.factors
            .iter()
            .find(|f| f.kind == "t" && f.id == totp_id)
            .map(|f| f.verified)
    }

    /// Unused recovery codes of the usable TOTPs with their sealed text, in their original
    /// order. Takes them out of the row (moved, not copied: ten per TOTP).
    pub(crate) fn take_codes(&mut self) -> Vec<StoredRecoveryCode> {
        std::mem::take(&mut self.codes)
            .into_iter()
            .filter(|c| self.usable_totp(&c.totp_id).is_some())
            .filter_map(|c| match (c.key_id, c.sealed) {
                (Some(key_id), Some(Hex(bytes))) => Some(StoredRecoveryCode {
                    id: c.id,
                    totp_id: c.totp_id,
                    sealed: Sealed { key_id, bytes },
                }),
                _ => None,
            })
            .collect()
    }

    /// The recovery code found by its index. Its TOTP counts as verified only if it is among
    /// the user's usable TOTPs and verified (a verified TOTP is always usable).
    pub(crate) fn found(&self) -> Option<FoundRecoveryCode> {
        self.codes.first().map(|c| FoundRecoveryCode {
            id: c.id.clone(),
            totp_id: c.totp_id.clone(),
            totp_verified: self.usable_totp(&c.totp_id) == Some(true),
            used: c.used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sql;
    use crate::entity::user;
    use domain::ports::With;
    use sea_orm::{DatabaseBackend, Iden, Iterable};

    /// The statement reads the user by position: it must list the entity's columns in the
    /// entity's order, each at its `user::Column` discriminant, or a column would be read into
    /// the wrong field.
    #[test]
    fn the_statement_reads_every_user_column_in_the_entitys_order() {
        for (i, c) in user::Column::iter().enumerate() {
            assert_eq!(c as usize, i, "{}", c.to_string());
        }
        let listed: Vec<String> = user::Column::iter()
            .map(|c| format!("u.{}", c.to_string()))
            .collect();
        assert_eq!(listed[0], "u.id");
        assert_eq!(listed.len(), 15);
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let text = sql(backend, false, With::UnusedCodes);
            assert!(
                text.starts_with(&format!("SELECT {}, (SELECT", listed.join(", "))),
                "{text}"
            );
        }
    }
}
