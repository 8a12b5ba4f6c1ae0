//! The store suite: the same tests on SQLite and Postgres (one integration binary).

// Test code: a failed unwrap is a failed test (clippy.toml allows it only in #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use domain::Error;
use domain::crypto::Sealed;
use domain::ids::{self, Environment, Kind, UserRef};
use domain::model::*;
use domain::ports::{Store, With};
use futures::future::join_all;
use serde_json::json;
use store::Db;

const NOW: i64 = 1_800_000_000;

/// The user's usable TOTPs with their sealed secrets, as authenticate loads them.
async fn usable_totps(db: &Db, p: &str, uid: &str, now: i64) -> Vec<StoredTotp> {
    let r = UserRef::Id(uid.to_owned());
    let loaded = db.load_user(p, &r, now, With::TotpSecrets).await.unwrap();
    loaded.map(|l| l.totps).unwrap_or_default()
}

/// The user's recovery code with one of these index values, as recover loads it.
async fn find_recovery_code(
    db: &Db,
    p: &str,
    uid: &str,
    candidates: &[Vec<u8>],
) -> Option<FoundRecoveryCode> {
    let r = UserRef::Id(uid.to_owned());
    let loaded = db
        .load_user(p, &r, NOW, With::CodeByIndex(candidates))
        .await
        .unwrap();
    loaded.and_then(|l| l.found)
}

/// The unused codes of the user's usable TOTPs, as the recovery_codes route loads them.
async fn unused_recovery_codes(db: &Db, p: &str, uid: &str, now: i64) -> Vec<StoredRecoveryCode> {
    let r = UserRef::Id(uid.to_owned());
    let loaded = db.load_user(p, &r, now, With::UnusedCodes).await.unwrap();
    loaded.map(|l| l.codes).unwrap_or_default()
}

/// One number read straight from the tables, past the port: `sql` selects it as `n`, with `$1`
/// bound to `id` (sqlx binds `$N` on SQLite too).
async fn scalar(db: &Db, sql: &str, id: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let conn = db.connection();
    let stmt = Statement::from_sql_and_values(conn.get_database_backend(), sql, [id.into()]);
    let row = conn.query_one_raw(stmt).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Rows left in `recovery_codes` for a TOTP, whatever the queries would show.
async fn stored_codes(db: &Db, totp_id: &str) -> i64 {
    scalar(
        db,
        "SELECT count(*) AS n FROM recovery_codes WHERE totp_id = $1",
        totp_id,
    )
    .await
}

async fn project(db: &Db) -> String {
    let p = Project {
        id: ids::mint(Kind::Project, Environment::Test),
        env: Environment::Test,
        name: "T".into(),
    };
    db.insert_project(&p, &ids::mint(Kind::Secret, Environment::Test), &[7u8; 32], NOW)
        .await
        .unwrap();
    p.id
}

fn new_user(email: Option<&str>, external_id: Option<&str>) -> NewUser {
    NewUser {
        id: ids::mint(Kind::User, Environment::Test),
        external_id: external_id.map(str::to_owned),
        status: UserStatus::Pending,
        name: Name {
            first_name: Some("Ada".into()),
            ..Name::default()
        },
        email: email.map(|e| Email {
            id: ids::mint(Kind::Email, Environment::Test),
            email: e.into(),
            verified: false,
        }),
        phone_number: None,
        trusted_metadata: json!({"a": 1}).as_object().unwrap().clone(),
        untrusted_metadata: Default::default(),
        roles: vec!["stytch_user".into()],
        created_at: NOW,
    }
}

fn sealed(b: u8) -> Sealed {
    Sealed {
        key_id: "k1".into(),
        bytes: vec![b; 40],
    }
}

async fn user_with_totp(db: &Db, pid: &str) -> (String, String, Vec<String>) {
    let u = new_user(Some(&format!("{}@example.com", uuid::Uuid::new_v4())), None);
    db.insert_user(pid, &u).await.unwrap();
    let totp_id = ids::mint(Kind::Totp, Environment::Test);
    let codes: Vec<NewRecoveryCode> = (0..10u8)
        .map(|i| NewRecoveryCode {
            id: ids::mint(Kind::RecoveryCode, Environment::Test),
            index_key_id: "k1".into(),
            index: vec![i; 32],
            sealed: sealed(i),
        })
        .collect();
    let code_ids = codes.iter().map(|c| c.id.clone()).collect();
    let t = NewTotp {
        id: totp_id.clone(),
        user_id: u.id.clone(),
        secret: sealed(99),
        expires_at: NOW + 600,
        created_at: NOW,
        recovery_codes: codes,
    };
    db.insert_totp(pid, &t, NOW).await.unwrap();
    (u.id, totp_id, code_ids)
}

/// What one load brings with the user follows the TOTP's life: a pending TOTP's codes show
/// until it expires (then none, though the rows remain until a purge), its secret comes
/// only when asked for, and a code found by index knows whether its TOTP is verified.
async fn one_load_brings_what_the_route_needs(db: &Db) {
    let p = project(db).await;
    let (uid, tid, code_ids) = user_with_totp(db, &p).await;
    let r = UserRef::Id(uid.clone());
    let plain = db.load_user(&p, &r, NOW, With::Nothing).await.unwrap().unwrap();
    assert_eq!(plain.user.totps.len(), 1);
    assert!(plain.totps.is_empty() && plain.codes.is_empty() && plain.found.is_none());
    let secrets = usable_totps(db, &p, &uid, NOW).await;
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0].secret.bytes,
        sealed(99).bytes,
        "the sealed secret, byte for byte"
    );
    let codes = unused_recovery_codes(db, &p, &uid, NOW).await;
    assert_eq!(codes.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), code_ids);
    assert_eq!(codes[4].sealed.bytes, sealed(4).bytes);
    let pending = find_recovery_code(db, &p, &uid, &[vec![9u8; 32], vec![4u8; 32]])
        .await
        .unwrap();
    assert_eq!(pending.id, code_ids[4]);
    assert!(!pending.totp_verified && !pending.used);
    assert!(
        find_recovery_code(db, &p, &uid, &[vec![42u8; 32]])
            .await
            .is_none()
    );
    // Expired (the TOTP was pending until NOW + 600): nothing usable, rows still stored.
    assert!(unused_recovery_codes(db, &p, &uid, NOW + 601).await.is_empty());
    assert!(usable_totps(db, &p, &uid, NOW + 601).await.is_empty());
    assert_eq!(stored_codes(db, &tid).await, 10);
    // Verified: the found code's TOTP is verified, and stays usable.
    assert!(db.accept_totp_step(&p, &uid, &tid, 7, NOW, None).await.unwrap());
    let found = find_recovery_code(db, &p, &uid, &[vec![4u8; 32]]).await.unwrap();
    assert!(found.totp_verified);
    assert_eq!(unused_recovery_codes(db, &p, &uid, NOW + 601).await.len(), 10);
    // By external id, the same statement shape.
    let ext = new_user(Some("ext@example.com"), Some("crm|7"));
    db.insert_user(&p, &ext).await.unwrap();
    let by_ext = UserRef::External("crm|7".into());
    let loaded = db
        .load_user(&p, &by_ext, NOW, With::UnusedCodes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.user.id, ext.id);
    assert!(loaded.codes.is_empty());
}
on_both_backends!(one_load_brings_what_the_route_needs);

async fn users_are_unique_per_project_and_invisible_to_others(db: &Db) {
    let (p1, p2) = (project(db).await, project(db).await);
    let u = new_user(Some("ada@example.com"), Some("crm|1"));
    db.insert_user(&p1, &u).await.unwrap();
    let found = db
        .find_user(&p1, &UserRef::External("crm|1".into()), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, u.id);
    assert_eq!(found.emails[0].email, "ada@example.com");
    assert_eq!(found.trusted_metadata["a"], 1);
    assert!(
        db.find_user(&p2, &UserRef::Id(u.id.clone()), NOW)
            .await
            .unwrap()
            .is_none()
    );
    let dup = db
        .insert_user(&p1, &new_user(Some("ada@example.com"), None))
        .await
        .unwrap_err();
    assert_eq!(dup.error_type(), "duplicate_email");
    let dup = db
        .insert_user(&p1, &new_user(Some("bob@example.com"), Some("crm|1")))
        .await
        .unwrap_err();
    assert_eq!(dup.error_type(), "duplicate_user_external_id");
    // Nothing of the failed insert was left behind.
    assert!(
        db.find_user(&p1, &UserRef::External("crm|1".into()), NOW)
            .await
            .unwrap()
            .unwrap()
            .id
            == u.id
    );
    // The same email and external id are fine in another project.
    db.insert_user(&p2, &new_user(Some("ada@example.com"), Some("crm|1")))
        .await
        .unwrap();
    // Deleting from the wrong project deletes nothing.
    assert!(!db.delete_user(&p2, &u.id).await.unwrap());
    assert!(db.delete_user(&p1, &u.id).await.unwrap());
    assert!(
        db.find_user(&p1, &UserRef::Id(u.id), NOW)
            .await
            .unwrap()
            .is_none()
    );
}
on_both_backends!(users_are_unique_per_project_and_invisible_to_others);

async fn metadata_patches_merge_and_null_deletes(db: &Db) {
    let p = project(db).await;
    let u = new_user(Some("m@example.com"), None);
    db.insert_user(&p, &u).await.unwrap();
    let patch = UserPatch {
        trusted_metadata: Some(json!({"a": null, "b": [1, 2]}).as_object().unwrap().clone()),
        name: Some(Name {
            last_name: Some("Lovelace".into()),
            ..Name::default()
        }),
        ..UserPatch::default()
    };
    db.update_user(&p, &u.id, &patch, NOW + 1).await.unwrap();
    let got = db
        .find_user(&p, &UserRef::Id(u.id.clone()), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(got.trusted_metadata),
        json!({"b": [1, 2]})
    );
    assert_eq!(
        got.name.first_name.as_deref(),
        Some("Ada"),
        "unset name parts are kept"
    );
    assert_eq!(got.name.last_name.as_deref(), Some("Lovelace"));
}
on_both_backends!(metadata_patches_merge_and_null_deletes);

async fn a_time_step_is_accepted_once_under_concurrency(db: &Db) {
    let p = project(db).await;
    let (uid, tid, _) = user_with_totp(db, &p).await;
    let results = join_all((0..20).map(|_| {
        let (db, p, uid, tid) = (db.clone(), p.clone(), uid.clone(), tid.clone());
        async move {
            db.accept_totp_step(&p, &uid, &tid, 1000, NOW, None)
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    // Earlier and equal steps are refused; a later one is accepted.
    assert!(!db.accept_totp_step(&p, &uid, &tid, 999, NOW, None).await.unwrap());
    assert!(
        db.accept_totp_step(&p, &uid, &tid, 1001, NOW, None)
            .await
            .unwrap()
    );
    let u = db
        .find_user(&p, &UserRef::Id(uid.clone()), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        u.status,
        UserStatus::Active,
        "first success activates a pending user"
    );
    assert!(u.totps[0].verified);
    // A verified TOTP never expires; another create is refused.
    assert_eq!(usable_totps(db, &p, &uid, NOW + 10_000_000).await.len(), 1);
    let again = NewTotp {
        id: ids::mint(Kind::Totp, Environment::Test),
        user_id: uid.clone(),
        secret: sealed(1),
        expires_at: NOW + 600,
        created_at: NOW,
        recovery_codes: vec![],
    };
    assert!(matches!(
        db.insert_totp(&p, &again, NOW).await,
        Err(Error::ActiveTotpExists)
    ));
}
on_both_backends!(a_time_step_is_accepted_once_under_concurrency);

async fn a_recovery_code_is_spent_once_under_concurrency(db: &Db) {
    let p = project(db).await;
    let (uid, tid, code_ids) = user_with_totp(db, &p).await;
    assert!(db.accept_totp_step(&p, &uid, &tid, 5, NOW, None).await.unwrap());
    let found = find_recovery_code(db, &p, &uid, &[vec![3u8; 32]]).await.unwrap();
    assert_eq!(found.id, code_ids[3]);
    assert!(found.totp_verified && !found.used);
    let results = join_all((0..50).map(|_| {
        let (db, p, uid, cid) = (db.clone(), p.clone(), uid.clone(), found.id.clone());
        async move { db.spend_recovery_code(&p, &uid, &cid, NOW, None).await.unwrap() }
    }))
    .await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1);
    assert!(
        find_recovery_code(db, &p, &uid, &[vec![3u8; 32]])
            .await
            .unwrap()
            .used
    );
    let unused = unused_recovery_codes(db, &p, &uid, NOW).await;
    assert!(unused.iter().all(|c| c.totp_id == tid));
    assert_eq!(unused.len(), 9);
    assert!(unused.iter().all(|c| c.id != found.id));
    // Codes come back in the order they were created.
    let order: Vec<_> = unused.iter().map(|c| c.id.clone()).collect();
    let want: Vec<_> = code_ids.iter().filter(|c| **c != found.id).cloned().collect();
    assert_eq!(order, want);
}
on_both_backends!(a_recovery_code_is_spent_once_under_concurrency);

async fn concurrent_failures_lock_the_user_exactly_once(db: &Db) {
    let p = project(db).await;
    let (uid, _, _) = user_with_totp(db, &p).await;
    let policy = LockPolicy {
        max_failures: 10,
        lock_secs: 3600,
    };
    let outcomes = join_all((0..25).map(|_| {
        let (db, p, uid) = (db.clone(), p.clone(), uid.clone());
        async move { db.record_failure(&p, &uid, NOW, policy).await.unwrap() }
    }))
    .await;
    let set = outcomes
        .iter()
        .filter(|o| matches!(o, FailureOutcome::LockedNow(_)))
        .count();
    assert_eq!(set, 1, "the lock is set by exactly one failure: {outcomes:?}");
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, FailureOutcome::Counted))
        .count();
    assert_eq!(
        counted, 9,
        "failures after the lock are not counted: {outcomes:?}"
    );
    let u = db
        .find_user(&p, &UserRef::Id(uid.clone()), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        u.lock,
        Some(Lock {
            created_at: NOW,
            expires_at: NOW + 3600
        })
    );
    assert_eq!(
        db.record_failure(&p, &uid, NOW + 1, policy).await.unwrap(),
        FailureOutcome::AlreadyLocked(NOW + 3600)
    );
    // After the lock expires the count starts from zero: 9 more failures do not lock again.
    for _ in 0..9 {
        assert_eq!(
            db.record_failure(&p, &uid, NOW + 3600, policy).await.unwrap(),
            FailureOutcome::Counted
        );
    }
    assert_eq!(
        db.record_failure(&p, &uid, NOW + 3600, policy).await.unwrap(),
        FailureOutcome::LockedNow(NOW + 7200)
    );
}
on_both_backends!(concurrent_failures_lock_the_user_exactly_once);

/// `users.updated_at`, read directly (the port does not expose it).
async fn updated_at(db: &Db, uid: &str) -> i64 {
    scalar(db, "SELECT updated_at AS n FROM users WHERE id = $1", uid).await
}

/// A success starts the failure count again and activates a pending user; when there is
/// nothing to reset (an active user with no failures) it leaves the user row as it was.
async fn a_success_resets_the_failure_count_and_otherwise_leaves_the_user_row(db: &Db) {
    let p = project(db).await;
    let (uid, tid, _) = user_with_totp(db, &p).await;
    let policy = LockPolicy {
        max_failures: 5,
        lock_secs: 300,
    };
    for _ in 0..3 {
        db.record_failure(&p, &uid, NOW, policy).await.unwrap();
    }
    assert!(
        db.accept_totp_step(&p, &uid, &tid, 10, NOW + 5, None)
            .await
            .unwrap()
    );
    assert_eq!(updated_at(db, &uid).await, NOW + 5, "the reset changed the row");
    // Counted from zero again: four failures count, the fifth locks.
    for _ in 0..4 {
        assert_eq!(
            db.record_failure(&p, &uid, NOW + 6, policy).await.unwrap(),
            FailureOutcome::Counted
        );
    }
    assert_eq!(
        db.record_failure(&p, &uid, NOW + 6, policy).await.unwrap(),
        FailureOutcome::LockedNow(NOW + 306)
    );
    // The lock started the count again, so once it expires a success finds nothing to reset
    // and leaves the row as it was; after two more failures it resets them.
    assert!(
        db.accept_totp_step(&p, &uid, &tid, 11, NOW + 400, None)
            .await
            .unwrap()
    );
    assert_eq!(
        updated_at(db, &uid).await,
        NOW + 5,
        "nothing to reset: the user row is left as it was"
    );
    for _ in 0..2 {
        db.record_failure(&p, &uid, NOW + 410, policy).await.unwrap();
    }
    assert!(
        db.accept_totp_step(&p, &uid, &tid, 12, NOW + 430, None)
            .await
            .unwrap()
    );
    assert_eq!(updated_at(db, &uid).await, NOW + 430);
    for _ in 0..4 {
        assert_eq!(
            db.record_failure(&p, &uid, NOW + 440, policy).await.unwrap(),
            FailureOutcome::Counted
        );
    }
    let u = db
        .find_user(&p, &UserRef::Id(uid.clone()), NOW + 440)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UserStatus::Active);
}
on_both_backends!(a_success_resets_the_failure_count_and_otherwise_leaves_the_user_row);

async fn a_locked_user_cannot_succeed_even_after_passing_an_earlier_check(db: &Db) {
    let p = project(db).await;
    let (uid, tid, _) = user_with_totp(db, &p).await;
    let policy = LockPolicy {
        max_failures: 10,
        lock_secs: 300,
    };
    for _ in 0..10 {
        db.record_failure(&p, &uid, NOW, policy).await.unwrap();
    }
    // The success path re-checks the lock inside its transaction, and consumes nothing.
    assert!(matches!(
        db.accept_totp_step(&p, &uid, &tid, 7, NOW, None).await,
        Err(Error::UserLocked { .. })
    ));
    assert!(
        db.accept_totp_step(&p, &uid, &tid, 7, NOW + 300, None)
            .await
            .unwrap()
    );
}
on_both_backends!(a_locked_user_cannot_succeed_even_after_passing_an_earlier_check);

async fn a_new_create_replaces_the_pending_totp_and_expired_ones_vanish(db: &Db) {
    let p = project(db).await;
    let (uid, first, _) = user_with_totp(db, &p).await;
    let second = NewTotp {
        id: ids::mint(Kind::Totp, Environment::Test),
        user_id: uid.clone(),
        secret: sealed(2),
        expires_at: NOW + 300,
        created_at: NOW + 1,
        recovery_codes: vec![],
    };
    db.insert_totp(&p, &second, NOW + 1).await.unwrap();
    let usable = usable_totps(db, &p, &uid, NOW + 2).await;
    assert_eq!(
        usable.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![second.id.as_str()]
    );
    assert!(stored_codes(db, &first).await == 0, "old codes deleted");
    assert!(
        usable_totps(db, &p, &uid, NOW + 301).await.is_empty(),
        "expired pending is invisible"
    );
    assert!(matches!(
        db.accept_totp_step(&p, &uid, &second.id, 1, NOW + 301, None)
            .await,
        Err(Error::TotpsNotFoundForUser)
    ));
    assert_eq!(db.delete_totp(&p, &second.id, NOW).await.unwrap(), Some(uid));
    assert_eq!(db.delete_totp(&p, &second.id, NOW).await.unwrap(), None);
}
on_both_backends!(a_new_create_replaces_the_pending_totp_and_expired_ones_vanish);

/// Several replicas starting at once on an empty Postgres database all come up: migrations run
/// under an advisory lock, one after the other (spec §5.21).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_at_once_all_start_on_postgres() {
    use sea_orm::{ConnectionTrait, Database};
    let Some(url) = support::postgres_url() else {
        if support::require_services() {
            panic!("DATABASE_URL is not set and services are required (CI=true)");
        }
        eprintln!(
            "SKIPPED (no Postgres: set DATABASE_URL): replicas_migrating_at_once_all_start_on_postgres"
        );
        return;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(url.as_str()).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let results = join_all((0..4).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let pool = store::PoolSettings {
                schema: Some(schema),
                ..store::PoolSettings::default()
            };
            let db = Db::connect(&url, &pool).await?;
            db.migrate().await?;
            db.count_projects()
                .await
                .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
            db.close().await
        }
    }))
    .await;
    admin
        .execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    admin.close().await.unwrap();
    for r in results {
        r.unwrap();
    }
}

/// On Postgres the tables the hot path updates in place keep a fifth of each page free, so a
/// spent code, a used time step or a failure count is a HOT update that leaves the indexes
/// alone, even right after a bulk load (issue 8: `recover` ran 7 % faster in
/// `cargo xtask bench`). SQLite has no such setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updated_tables_leave_room_in_each_page_on_postgres() {
    use sea_orm::{ConnectionTrait, Statement};
    let test = "updated_tables_leave_room_in_each_page_on_postgres";
    let Some(t) = support::TestDb::new(support::Backend::Postgres, test).await else {
        return;
    };
    let conn = t.db.connection();
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT c.relname AS name, array_to_string(c.reloptions, ',') AS options \
             FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace \
               AND c.relkind = 'r' ORDER BY c.relname",
        ))
        .await
        .unwrap();
    let options: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|r| (r.try_get("", "name").unwrap(), r.try_get("", "options").unwrap()))
        .collect();
    for table in ["recovery_codes", "sessions", "totps", "users"] {
        let found = options.iter().find(|(n, _)| n == table);
        assert_eq!(
            found.and_then(|(_, o)| o.as_deref()),
            Some("fillfactor=80"),
            "{table}: {options:?}"
        );
    }
    // Tables written once and never updated in place keep the default.
    let projects = options.iter().find(|(n, _)| n == "projects");
    assert_eq!(projects.map(|(_, o)| o.as_deref()), Some(None), "{options:?}");
    t.finish().await;
}
