//! Schema migrations, run at start (`store::Db::migrate`). Portable DDL through sea-query, so
//! the same files build the SQLite and the Postgres schema.

use sea_orm_migration::prelude::*;

fn id(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string().not_null().primary_key().to_owned()
}
fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string().not_null().to_owned()
}
fn text_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string().null().to_owned()
}
fn int(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}
fn int_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}
fn blob(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).blob().not_null().to_owned()
}
fn boolean(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).boolean().not_null().to_owned()
}

async fn table(m: &SchemaManager<'_>, name: &'static str, cols: Vec<ColumnDef>) -> Result<(), DbErr> {
    let mut t = Table::create();
    t.table(name).if_not_exists();
    for mut c in cols {
        t.col(&mut c);
    }
    m.create_table(t).await
}

async fn index(
    m: &SchemaManager<'_>,
    name: &'static str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut i = Index::create();
    i.name(name).table(table).if_not_exists();
    for c in cols {
        i.col(*c);
    }
    if unique {
        i.unique();
    }
    m.create_index(i).await
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_sessions::Migration),
            Box::new(m0003_fillfactor::Migration),
        ]
    }
}

mod m0001_initial {
    use sea_orm_migration::prelude::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0001_initial"
        }
    }

    use super::*;

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            table(
                m,
                "projects",
                vec![id("id"), text("name"), text("environment"), int("created_at")],
            )
            .await?;
            table(
                m,
                "project_secrets",
                vec![
                    id("id"),
                    text("project_id"),
                    blob("secret_hash"),
                    int("created_at"),
                    int_null("revoked_at"),
                ],
            )
            .await?;
            index(
                m,
                "ix_project_secrets_project",
                "project_secrets",
                &["project_id"],
                false,
            )
            .await?;
            table(
                m,
                "users",
                vec![
                    id("id"),
                    text("project_id"),
                    text_null("external_id"),
                    text("status"),
                    text_null("first_name"),
                    text_null("middle_name"),
                    text_null("last_name"),
                    text("trusted_metadata"),
                    text("untrusted_metadata"),
                    text("roles"),
                    int("failed_attempts"),
                    int_null("lock_created_at"),
                    int_null("lock_expires_at"),
                    int("created_at"),
                    int("updated_at"),
                ],
            )
            .await?;
            index(
                m,
                "ux_users_external_id",
                "users",
                &["project_id", "external_id"],
                true,
            )
            .await?;
            index(
                m,
                "ix_users_project_created",
                "users",
                &["project_id", "created_at"],
                false,
            )
            .await?;
            for (tbl, col, ux) in [
                ("user_emails", "email", "ux_user_emails_email"),
                (
                    "user_phone_numbers",
                    "phone_number",
                    "ux_user_phone_numbers_phone",
                ),
            ] {
                table(
                    m,
                    tbl,
                    vec![
                        id("id"),
                        text("project_id"),
                        text("user_id"),
                        text(col),
                        boolean("verified"),
                        int("created_at"),
                    ],
                )
                .await?;
                index(m, ux, tbl, &["project_id", col], true).await?;
            }
            index(m, "ix_user_emails_user", "user_emails", &["user_id"], false).await?;
            index(
                m,
                "ix_user_phone_numbers_user",
                "user_phone_numbers",
                &["user_id"],
                false,
            )
            .await?;
            table(
                m,
                "totps",
                vec![
                    id("id"),
                    text("project_id"),
                    text("user_id"),
                    text("secret_key_id"),
                    blob("secret_sealed"),
                    boolean("verified"),
                    int_null("expires_at"),
                    int_null("last_used_step"),
                    int("created_at"),
                ],
            )
            .await?;
            index(m, "ix_totps_user", "totps", &["user_id"], false).await?;
            // At most one verified TOTP per user, whatever races between creates (spec §4).
            m.get_connection()
                .execute_unprepared(
                    "CREATE UNIQUE INDEX IF NOT EXISTS ux_totps_one_verified ON totps (user_id) WHERE verified",
                )
                .await?;
            table(
                m,
                "recovery_codes",
                vec![
                    id("id"),
                    text("project_id"),
                    text("user_id"),
                    text("totp_id"),
                    blob("code_index"),
                    text("index_key_id"),
                    text("code_key_id"),
                    blob("code_sealed"),
                    int("position"),
                    int_null("used_at"),
                    int("created_at"),
                ],
            )
            .await?;
            index(
                m,
                "ix_recovery_codes_user_index",
                "recovery_codes",
                &["user_id", "code_index"],
                false,
            )
            .await?;
            index(m, "ix_recovery_codes_totp", "recovery_codes", &["totp_id"], false).await?;
            Ok(())
        }
    }
}

mod m0002_sessions {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0002_sessions"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            table(
                m,
                "sessions",
                vec![
                    id("id"),
                    text("project_id"),
                    text("user_id"),
                    text("totp_id"),
                    blob("token_hash"),
                    text("factors"),
                    text("custom_claims"),
                    int("started_at"),
                    int("last_accessed_at"),
                    int("expires_at"),
                    int_null("revoked_at"),
                ],
            )
            .await?;
            index(m, "ux_sessions_token_hash", "sessions", &["token_hash"], true).await?;
            index(
                m,
                "ix_sessions_user",
                "sessions",
                &["project_id", "user_id"],
                false,
            )
            .await?;
            index(m, "ix_sessions_totp", "sessions", &["totp_id"], false).await?;
            table(
                m,
                "signing_keys",
                vec![
                    ColumnDef::new("kid").string().not_null().primary_key().to_owned(),
                    text("project_id"),
                    text("n"),
                    text("e"),
                    text("private_key_id"),
                    blob("private_sealed"),
                    int("created_at"),
                ],
            )
            .await?;
            index(
                m,
                "ix_signing_keys_project",
                "signing_keys",
                &["project_id", "created_at"],
                false,
            )
            .await?;
            Ok(())
        }
    }
}

/// Postgres: room in each heap page for the updates the hot path makes (a user's failure counter,
/// a TOTP's last used step, a code's `used_at`, a session's last access). With the default
/// fillfactor of 100 a freshly loaded page is full, so each such update moves the row to another
/// page and inserts into every index of the table; with room on the page it is a HOT update that
/// touches no index (issue 8). It applies to pages written from now on; `VACUUM FULL` rewrites
/// the existing ones if wanted. SQLite has no such setting.
mod m0003_fillfactor {
    use super::*;

    pub(super) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m0003_fillfactor"
        }
    }

    /// The tables whose rows the hot path updates in place.
    const UPDATED: [&str; 4] = ["users", "totps", "recovery_codes", "sessions"];

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            if m.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
                return Ok(());
            }
            for t in UPDATED {
                m.get_connection()
                    .execute_unprepared(&format!("ALTER TABLE {t} SET (fillfactor = 80)"))
                    .await?;
            }
            Ok(())
        }
    }
}
