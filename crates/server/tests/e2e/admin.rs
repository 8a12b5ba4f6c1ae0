//! The operator's `latch user …` commands against the data of a running server, on SQLite and
//! on Postgres: `--json` shapes, what each changes, and the exit codes of bad input.

use crate::helpers::*;
use crate::on_both_backends;
use serde_json::{Value, json};
use std::process::Command;

/// Runs `latch ARGS` on the app's database and key ring: (exit ok, stdout, stderr).
fn latch(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    latch_with_ring(app, "k1", &[("K1", &app.key)], args)
}

/// Runs `latch ARGS` on the app's database with another key ring: `active` and (ID, key) pairs.
fn latch_with_ring(
    app: &TestApp,
    active: &str,
    ring: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LATCH_ENV", "test")
        .env("LATCH__DATABASE__URL", &app.db_url)
        .env("LATCH__KEYS__ACTIVE", active)
        .envs(
            ring.iter()
                .map(|(id, key)| (format!("LATCH__KEYS__RING__{id}"), *key)),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn without_request_id(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("request_id");
    v
}

async fn user_commands(app: &TestApp) {
    let uid = app.create_user("admin@example.com").await;
    let (_, secret, _) = app.create_totp(&uid).await;
    let session = app
        .post(
            "/v1/totps/authenticate",
            json!({"user_id": uid, "totp_code": app.code(&secret, 0), "session_duration_minutes": 60}),
        )
        .await;
    let token = session.assert_ok()["session_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        app.authenticate(&uid, &app.wrong_code(&secret)).await;
    }
    assert_eq!(app.get_user(&uid).await.body["is_locked"], true);
    let pid = app.project_id.clone();

    // show --json is GET /v1/users/{id}.
    let (ok, out, err) = latch(app, &["user", "show", "--project", &pid, &uid, "--json"]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        without_request_id(shown),
        without_request_id(app.get_user(&uid).await.body)
    );
    let (ok, out, _) = latch(app, &["user", "show", "--project", &pid, &uid]);
    assert!(ok && out.contains("locked=true") && out.contains(&uid), "{out}");

    // unlock clears the lock and the counter: the right code works again at once.
    let (ok, out, err) = latch(app, &["user", "unlock", "--project", &pid, &uid, "--json"]);
    assert!(ok, "{err}");
    let unlocked: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(unlocked["is_locked"], false);
    assert_eq!(app.get_user(&uid).await.body["is_locked"], false);
    app.authenticate(&uid, &app.code(&secret, 1)).await.assert_ok();

    // reset-totp deletes the TOTPs and ends the sessions they minted.
    let (ok, out, err) = latch(app, &["user", "reset-totp", "--project", &pid, &uid, "--json"]);
    assert!(ok, "{err}");
    let reset: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reset["user_id"], uid.as_str());
    assert_eq!(reset["totps_removed"], 1);
    assert_eq!(reset["user"]["totps"], json!([]));
    assert_eq!(app.get_user(&uid).await.body["totps"], json!([]));
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_error(404, "session_not_found");
    app.create_totp(&uid).await; // a new device can be enrolled

    // Bad input: clear messages and a failing exit code.
    let unknown_project = "project-test-00000000-0000-4000-8000-000000000000";
    let (ok, _, err) = latch(app, &["user", "show", "--project", unknown_project, &uid]);
    assert!(!ok && err.contains("project_not_found"), "{err}");
    let unknown_user = "user-test-00000000-0000-4000-8000-000000000000";
    for cmd in ["show", "unlock", "reset-totp"] {
        let (ok, out, err) = latch(app, &["user", cmd, "--project", &pid, unknown_user, "--json"]);
        assert!(
            !ok && out.is_empty() && err.contains("user_not_found"),
            "{cmd}: {err}"
        );
    }
    let (ok, _, err) = latch(app, &["user", "show", "--project", &pid, "not a user id!"]);
    assert!(!ok && err.contains("invalid_user_id"), "{err}");
}

on_both_backends!(user_commands, &[("LATCH__LOCK__MAX_FAILURES", "2")]);

/// Polls until `GET /v1/users/{uid}` as (project, secret) answers `status`, for at most 5 s
/// (the running server trusts credentials it looked up for `server.credentials_cache_secs`).
async fn until_status_as(app: &TestApp, project: &str, secret: &str, path: &str, status: u16) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = app
            .call_as(project, secret, reqwest::Method::GET, path, None)
            .await
            .status
            .as_u16();
        if got == status || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn project_commands(app: &TestApp) {
    let pid = app.project_id.clone();
    let uid = app.create_user("projects@example.com").await;
    let path = format!("/v1/users/{uid}");

    let (ok, out, err) = latch(app, &["project", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let mine = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["project_id"] == pid.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["name"], "Acme");
    assert_eq!(mine["environment"], "test");
    let first_secret_id = mine["secret_ids"][0].as_str().unwrap().to_owned();
    assert_eq!(mine["secret_ids"].as_array().unwrap().len(), 1);

    let (ok, out, err) = latch(
        app,
        &["project", "rename", &pid, "--name", "Acme Rebrand", "--json"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["name"],
        "Acme Rebrand"
    );
    let (ok, _, err) = latch(app, &["project", "rename", &pid, "--name", "has:colon"]);
    assert!(!ok && err.contains("no ':'"), "{err}");

    // A second secret works on the running server; revoking the first stops it there.
    let (ok, out, err) = latch(app, &["project", "secret", "add", &pid, "--json"]);
    assert!(ok, "{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    let new_secret = added["secret"].as_str().unwrap().to_owned();
    let new_id = added["secret_id"].as_str().unwrap().to_owned();
    assert_eq!(until_status_as(app, &pid, &new_secret, &path, 200).await, 200);
    let (ok, out, err) = latch(
        app,
        &["project", "secret", "revoke", &pid, &first_secret_id, "--json"],
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["revoked"], true);
    assert_eq!(
        until_status_as(app, &pid, &app.secret, &path, 401).await,
        401,
        "revoked within the cache TTL"
    );
    app.call_as(&pid, &new_secret, reqwest::Method::GET, &path, None)
        .await
        .assert_ok();
    let (ok, _, err) = latch(app, &["project", "secret", "revoke", &pid, &new_id]);
    assert!(!ok && err.contains("last working secret"), "{err}");
    let (ok, _, err) = latch(app, &["project", "secret", "revoke", &pid, &first_secret_id]);
    assert!(!ok && err.contains("not a working secret"), "{err}");

    // Delete asks for --yes, then removes the project and every row of it.
    let (ok, _, err) = latch(app, &["project", "delete", &pid]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = latch(app, &["project", "delete", &pid, "--yes", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["deleted"], true);
    assert_eq!(until_status_as(app, &pid, &new_secret, &path, 401).await, 401);
    let (_, out, _) = latch(app, &["project", "list", "--json"]);
    assert!(!out.contains(&pid), "{out}");
    {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&app.db_url).await.unwrap();
        for table in ["users", "user_emails", "totps", "project_secrets", "projects"] {
            let column = if table == "projects" { "id" } else { "project_id" };
            let row = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    conn.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = '{pid}'"),
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                row.try_get::<i64>("", "n").unwrap(),
                0,
                "{table} keeps no row of it"
            );
        }
        conn.close().await.unwrap();
    }
    let (ok, _, err) = latch(app, &["user", "show", "--project", &pid, &uid]);
    assert!(!ok && err.contains("project_not_found"), "{err}");
    for args in [
        vec!["project", "rename", pid.as_str(), "--name", "X"],
        vec!["project", "delete", pid.as_str(), "--yes"],
        vec!["project", "secret", "add", pid.as_str()],
    ] {
        let (ok, _, err) = latch(app, &args);
        assert!(!ok && err.contains("project_not_found"), "{args:?}: {err}");
    }
}

on_both_backends!(
    project_commands,
    &[("LATCH__SERVER__CREDENTIALS_CACHE_SECS", "1")]
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_into_a_fresh_folder_authenticates_the_same_users() {
    let app = spawn_app_with(Backend::Sqlite, "backup", &[]).await.unwrap();
    let uid = app.create_user("backup@example.com").await;
    let (_, secret, codes) = app.create_totp(&uid).await;
    app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();

    // An online copy, taken while the server runs.
    let saved = tempfile::tempdir().unwrap();
    let copy = saved.path().join("latch-backup.db");
    let copy_arg = copy.display().to_string();
    let (ok, out, err) = latch(&app, &["backup", &copy_arg, "--json"]);
    assert!(ok, "{err}");
    assert!(err.contains("keep the key ring"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["bytes"].as_u64().unwrap() > 4096);
    let (ok, _, err) = latch(&app, &["backup", &copy_arg]);
    assert!(!ok && err.contains("exists"), "{err}");
    app.post("/v1/users", json!({"email": "after-backup@example.com"}))
        .await
        .assert_ok();

    // Restore: the copy becomes the database of a fresh data folder, with the same key ring.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, fresh.path().join("latch.db")).unwrap();
    let url = format!("sqlite://{}/latch.db", fresh.path().display());
    let restored = spawn_app_with(
        Backend::Sqlite,
        "restored",
        &[
            ("LATCH__DATABASE__URL", url.as_str()),
            ("LATCH__KEYS__RING__K1", app.key.as_str()),
        ],
    )
    .await
    .unwrap();
    let r = restored
        .call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::GET,
            &format!("/v1/users/{uid}"),
            None,
        )
        .await;
    assert_eq!(r.assert_ok()["emails"][0]["email"], "backup@example.com");
    // The same secret gives the same codes (the step already used stays used).
    let r = restored
        .call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::POST,
            "/v1/totps/authenticate",
            Some(json!({"user_id": uid, "totp_code": app.code(&secret, 0)})),
        )
        .await;
    r.assert_error(400, "totp_code_already_authenticated");
    restored
        .call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::POST,
            "/v1/totps/authenticate",
            Some(json!({"user_id": uid, "totp_code": app.code(&secret, 1)})),
        )
        .await
        .assert_ok();
    restored
        .call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::POST,
            "/v1/totps/recover",
            Some(json!({"user_id": uid, "recovery_code": codes[0]})),
        )
        .await
        .assert_ok();
    // What came after the backup is not in it.
    let search = restored.call_as(&app.project_id, &app.secret,
        reqwest::Method::POST,
        "/v1/users/search",
        Some(json!({"query": {"operator": "AND", "operands": [{"filter_name": "email_address", "filter_value": ["after-backup@example.com"]}]}})),
    )
    .await;
    assert_eq!(search.assert_ok()["results"], json!([]));
    restored.finish().await;
    app.finish().await;
}

/// The README's Postgres procedure: `pg_dump -Fc` of a live database, `pg_restore` into a new
/// one, the same key ring: the restored server authenticates the same users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pg_dump_and_pg_restore_keep_every_user() {
    let Some(app) = spawn_app_with(Backend::Postgres, "pg_backup", &[]).await else {
        return;
    };
    let admin = postgres_url("pg_backup").unwrap();
    let uid = app.create_user("pgdump@example.com").await;
    let (_, secret, _) = app.create_totp(&uid).await;
    app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("latch.dump");
    let ok = Command::new("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(&app.db_url)
        .status()
        .unwrap();
    assert!(ok.success(), "pg_dump");
    let name = format!("latch_e2e_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&admin, &format!("CREATE DATABASE {name}")).await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    let target = format!("{base}/{name}");
    let ok = Command::new("pg_restore")
        .args(["--no-owner", "-d", &target])
        .arg(&dump)
        .status()
        .unwrap();
    assert!(ok.success(), "pg_restore");
    let restored = spawn_app_with(
        Backend::Sqlite,
        "pg_restored",
        &[
            ("LATCH__DATABASE__URL", target.as_str()),
            ("LATCH__KEYS__RING__K1", app.key.as_str()),
        ],
    )
    .await
    .unwrap();
    restored
        .call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::POST,
            "/v1/totps/authenticate",
            Some(json!({"user_id": uid, "totp_code": app.code(&secret, 1)})),
        )
        .await
        .assert_ok();
    restored.finish().await;
    app.finish().await;
    admin_sql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Authenticates `uid` with a fresh step of `secret` and starts a session of `minutes`.
async fn session(app: &TestApp, uid: &str, secret: &[u8], offset: i64, minutes: u32) -> Value {
    app.post(
        "/v1/totps/authenticate",
        json!({"user_id": uid, "totp_code": app.code(secret, offset), "session_duration_minutes": minutes}),
    )
    .await
    .assert_ok()
    .clone()
}

async fn retention_purges_expired_pending_totps_and_old_sessions_only(app: &TestApp) {
    let pending_user = app.create_user("pending@example.com").await;
    app.create_totp(&pending_user).await; // never authenticated
    let short = app.create_user("short@example.com").await;
    let (_, short_secret, _) = app.create_totp(&short).await;
    session(app, &short, &short_secret, 0, 5).await; // ends in 5 minutes
    let revoked = session(app, &short, &short_secret, 1, 60).await;
    app.post(
        "/v1/sessions/revoke",
        json!({"session_id": revoked["session"]["session_id"]}),
    )
    .await
    .assert_ok();
    let long = app.create_user("long@example.com").await;
    let (_, long_secret, _) = app.create_totp(&long).await;
    let live = session(app, &long, &long_secret, 0, 527_040).await; // a year

    // Two days later: the pending TOTP expired (1440 minutes), two sessions ended.
    app.clock.advance(2 * 86_400);
    let day = 86_400;
    let kept_a_month = app.latch.purge(30 * day, true).await.unwrap();
    assert_eq!(
        (
            kept_a_month.pending_totps,
            kept_a_month.recovery_codes,
            kept_a_month.sessions
        ),
        (1, 10, 0),
        "sessions that ended two days ago are kept for a month"
    );
    let would = app.latch.purge(day, true).await.unwrap();
    assert_eq!(
        (would.pending_totps, would.recovery_codes, would.sessions),
        (1, 10, 2)
    );
    assert_eq!(
        app.latch.purge(day, true).await.unwrap(),
        would,
        "a dry run removes nothing"
    );
    assert_eq!(app.latch.purge(day, false).await.unwrap(), would);
    assert_eq!(
        app.latch.purge(day, false).await.unwrap(),
        domain::model::PurgeCounts::default()
    );
    // Nothing else went: verified TOTPs, their codes, users and the live session.
    for uid in [&short, &long] {
        let codes = app
            .post("/v1/totps/recovery_codes", json!({"user_id": uid}))
            .await;
        assert_eq!(
            codes.assert_ok()["totps"][0]["recovery_codes"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }
    app.get_user(&pending_user).await.assert_ok();
    app.post(
        "/v1/sessions/authenticate",
        json!({"session_token": live["session_token"]}),
    )
    .await
    .assert_ok();

    // The command: its JSON shape and exit code. (It runs on the wall clock, which is before
    // this test's manual clock, so nothing is due there.)
    let (ok, out, err) = latch(app, &["purge", "--dry-run", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"dry_run": true, "pending_totps": 0, "recovery_codes": 0, "sessions": 0})
    );
}

on_both_backends!(retention_purges_expired_pending_totps_and_old_sessions_only);

async fn keys_status_counts_and_a_removed_key_in_use_is_refused(app: &TestApp) {
    let uid = app.create_user("keys@example.com").await;
    let (_, secret, _) = app.create_totp(&uid).await;
    session(app, &uid, &secret, 0, 60).await; // signs a JWT: the project gets a signing key
    let (ok, out, err) = latch(app, &["keys", "status", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["active"], "k1");
    let k1 = &v["keys"][0];
    assert_eq!(k1["key_id"], "k1");
    assert_eq!(k1["active"], true);
    assert_eq!(
        k1["by_kind"],
        json!({"recovery_code_indexes": 10, "recovery_codes": 10, "signing_keys": 1, "totp_secrets": 1})
    );
    assert_eq!(k1["sealed"], 22);

    // A ring without k1, while rows are sealed under it: every command, and serve, refuse.
    let other = domain::crypto::KeyRing::generate_key().unwrap();
    let (ok, _, err) = latch_with_ring(app, "k2", &[("K2", &other)], &["keys", "status"]);
    assert!(!ok);
    assert!(
        err.contains("\"k1\" is not in keys.ring but still seals") && err.contains("1 totp_secrets"),
        "{err}"
    );
}

on_both_backends!(keys_status_counts_and_a_removed_key_in_use_is_refused);

/// `latch` with a ring of k1 (the app's key) and k2, k2 active.
fn latch_k2(app: &TestApp, k2: &str, args: &[&str]) -> (bool, String, String) {
    latch_with_ring(app, "k2", &[("K1", &app.key), ("K2", k2)], args)
}

async fn key_rotation_while_serving_fails_no_request(app: &TestApp) {
    let mut users = Vec::new();
    for i in 0..5 {
        let uid = app.create_user(&format!("rotate{i}@example.com")).await;
        let (_, secret, codes) = app.create_totp(&uid).await;
        session(app, &uid, &secret, 0, 60).await;
        users.push((uid, secret, codes));
    }
    // The replicas were restarted with k2 added and active (k1 still in the ring).
    let k2 = domain::crypto::KeyRing::generate_key().unwrap();
    let two = spawn_app_with(
        Backend::Sqlite,
        "rotation_replica",
        &[
            ("LATCH__DATABASE__URL", app.db_url.as_str()),
            ("LATCH__KEYS__ACTIVE", "k2"),
            ("LATCH__KEYS__RING__K1", app.key.as_str()),
            ("LATCH__KEYS__RING__K2", k2.as_str()),
        ],
    )
    .await
    .unwrap();
    let two = std::sync::Arc::new(two);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pid, secret) = (app.project_id.clone(), app.secret.clone());
    let ids: Vec<String> = users.iter().map(|u| u.0.clone()).collect();
    let load = {
        let (two, stop) = (two.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut served, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for uid in &ids {
                    let r = two
                        .call_as(
                            &pid,
                            &secret,
                            reqwest::Method::POST,
                            "/v1/totps/recovery_codes",
                            Some(json!({"user_id": uid})),
                        )
                        .await;
                    if r.status != 200
                        || r.body["totps"][0]["recovery_codes"].as_array().map(Vec::len) != Some(10)
                    {
                        failed.push(r.body.to_string());
                    }
                    let r = two
                        .call_as(
                            &pid,
                            &secret,
                            reqwest::Method::GET,
                            &format!("/v1/sessions/jwks/{pid}"),
                            None,
                        )
                        .await;
                    if r.status != 200 {
                        failed.push(r.body.to_string());
                    }
                    served += 2;
                }
            }
            (served, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (ok, out, err) = latch_k2(app, &k2, &["keys", "rotate", "--batch", "3", "--json"]);
    assert!(ok, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during the rotation: {failed:?}"
    );
    assert!(served > 20, "the server was answering throughout: {served}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rotated["resealed"],
        json!({"totp_secrets": 5, "recovery_codes": 50, "signing_keys": 1})
    );

    let (ok, out, err) = latch_k2(app, &k2, &["keys", "status", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let by_id = |id: &str| {
        status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("k1")["sealed"], 0, "nothing left under the old key");
    assert_eq!(by_id("k2")["sealed"], 5 + 50 + 50 + 1);
    // Running it again has nothing to do.
    let (ok, out, _) = latch_k2(app, &k2, &["keys", "rotate", "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["resealed"],
        json!({"totp_secrets": 0, "recovery_codes": 0, "signing_keys": 0})
    );

    // Every user still authenticates, with a TOTP code and with a recovery code.
    for (uid, secret, codes) in &users {
        let auth = |body| {
            two.call_as(
                &app.project_id,
                &app.secret,
                reqwest::Method::POST,
                "/v1/totps/authenticate",
                Some(body),
            )
        };
        auth(json!({"user_id": uid, "totp_code": app.code(secret, 1)}))
            .await
            .assert_ok();
        two.call_as(
            &app.project_id,
            &app.secret,
            reqwest::Method::POST,
            "/v1/totps/recover",
            Some(json!({"user_id": uid, "recovery_code": codes[3]})),
        )
        .await
        .assert_ok();
    }
    // k1 can now leave the ring: a start with k2 alone is accepted.
    let (ok, _, err) = latch_with_ring(app, "k2", &[("K2", &k2)], &["keys", "status"]);
    assert!(ok, "{err}");
    match std::sync::Arc::try_unwrap(two) {
        Ok(two) => two.finish().await,
        Err(_) => panic!("the load task still holds the replica"),
    }
}

on_both_backends!(key_rotation_while_serving_fails_no_request);
