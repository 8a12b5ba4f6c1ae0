//! Test databases: a fresh SQLite file, or a fresh schema in the Postgres named by
//! `DATABASE_URL` (architecture §9). Without `DATABASE_URL` the Postgres half of each test says
//! SKIPPED and returns, unless `CI=true` or `LATCH_REQUIRE_SERVICES=1`, where it fails.

#![allow(unreachable_pub)]

use sea_orm::{ConnectionTrait, Database};
use store::{Db, PoolSettings};

pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub db: Db,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn require_services() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("LATCH_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub fn postgres_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

impl TestDb {
    pub async fn new(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/latch.db", dir.path().display());
                let db = Db::connect(&url, &PoolSettings::default()).await.unwrap();
                db.migrate().await.unwrap();
                Some(TestDb {
                    db,
                    cleanup: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let Some(url) = postgres_url() else {
                    if require_services() {
                        panic!("{test}: DATABASE_URL is not set and services are required (CI=true)");
                    }
                    eprintln!("SKIPPED (no Postgres: set DATABASE_URL): {test}");
                    return None;
                };
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(url.as_str()).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let pool = PoolSettings {
                    schema: Some(schema.clone()),
                    ..PoolSettings::default()
                };
                let db = Db::connect(&url, &pool).await.unwrap();
                db.migrate().await.unwrap();
                Some(TestDb {
                    db,
                    cleanup: Some((url, schema)),
                    _dir: None,
                })
            }
        }
    }

    /// Drops the Postgres schema (the SQLite file goes with its temporary folder).
    pub async fn finish(self) {
        self.db.close().await.unwrap();
        if let Some((url, schema)) = self.cleanup {
            let admin = Database::connect(url.as_str()).await.unwrap();
            admin
                .execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}

/// Runs one test body on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let t = $crate::support::TestDb::new($crate::support::Backend::Sqlite, stringify!($name))
                    .await
                    .unwrap();
                super::$name(&t.db).await;
                t.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(t) =
                    $crate::support::TestDb::new($crate::support::Backend::Postgres, stringify!($name)).await
                else {
                    return;
                };
                super::$name(&t.db).await;
                t.finish().await;
            }
        }
    };
}
