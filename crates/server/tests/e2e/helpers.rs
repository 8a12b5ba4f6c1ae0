//! `spawn_app`: a Latch server in this process on a free port, with a fresh database (a SQLite
//! file, or a new Postgres database when `DATABASE_URL` names a server) and a clock the test
//! moves. Without `DATABASE_URL` the Postgres half says SKIPPED, or fails when `CI=true`.

#![allow(unreachable_pub, dead_code)]

use domain::clock::ManualClock;
use domain::ids::Environment;
use domain::service::Latch;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use server::Application;
use server::settings::Settings;
use std::sync::Arc;

/// Mid-step, so ±1 step codes are unambiguous.
pub const START: i64 = 1_800_000_015;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub project_id: String,
    pub secret: String,
    /// The key ring's one key (`LATCH__KEYS__RING__K1`), for commands run on the same data.
    pub key: String,
    pub clock: Arc<ManualClock>,
    pub latch: Arc<Latch>,
    pub db_url: String,
    handle: actix_web::dev::ServerHandle,
    drop_database: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn error_type(&self) -> &str {
        self.body["error_type"].as_str().unwrap_or("")
    }

    /// Asserts an error envelope with this status and type, and a matching request id.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error_type: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.error_type(), error_type, "body: {}", self.body);
        assert_eq!(self.body["status_code"], status);
        assert!(
            self.body["error_message"]
                .as_str()
                .is_some_and(|m| m.ends_with('.'))
        );
        self.assert_request_id();
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        assert_eq!(self.body["status_code"], 200);
        self.assert_request_id();
        &self.body
    }

    #[track_caller]
    pub fn assert_request_id(&self) {
        let rid = self.body["request_id"].as_str().expect("request_id in body");
        assert!(
            rid.starts_with("request-id-test-") || rid.starts_with("request-id-live-"),
            "{rid}"
        );
        assert_eq!(
            self.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some(rid)
        );
    }
}

pub fn require_services() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("LATCH_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The Postgres server of `DATABASE_URL`; without one, SKIPPED (or a failure with `CI=true`).
pub fn postgres_url(test: &str) -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    if url.is_none() {
        if require_services() {
            panic!("{test}: DATABASE_URL is not set and services are required (CI=true)");
        }
        eprintln!("SKIPPED (no Postgres: set DATABASE_URL): {test}");
    }
    url
}

pub async fn spawn_app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app_with(backend, test, &[]).await
}

/// Spawns an app with extra `LATCH__…` settings.
pub async fn spawn_app_with(backend: Backend, test: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, drop_database) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/latch.db", dir.path().display()), None),
        Backend::Postgres => {
            let url = postgres_url(test)?;
            let name = format!("latch_e2e_{}", uuid::Uuid::new_v4().simple());
            admin_sql(&url, &format!("CREATE DATABASE {name}")).await;
            let (base, _) = url.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), Some((url.clone(), name)))
        }
    };
    let key = domain::crypto::KeyRing::generate_key().unwrap();
    let mut vars: Vec<(String, String)> = vec![
        ("LATCH__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("LATCH__SERVER__WORKERS".into(), "2".into()),
        ("LATCH__SERVER__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
        ("LATCH__DATABASE__URL".into(), db_url.clone()),
        ("LATCH__DATABASE__MAX_CONNECTIONS".into(), "4".into()),
        ("LATCH__KEYS__ACTIVE".into(), "k1".into()),
        ("LATCH__KEYS__RING__K1".into(), key.clone()),
        ("LATCH__BOOTSTRAP__FIRST_PROJECT".into(), "false".into()),
        // Tests fire requests far faster than any client; the limits have their own tests.
        ("LATCH__RATELIMIT__PROJECT_ROUTE__RATE".into(), "1000000".into()),
        ("LATCH__RATELIMIT__PROJECT_ROUTE__BURST".into(), "1000000".into()),
        ("LATCH__RATELIMIT__USERS_SEARCH__BURST".into(), "1000000".into()),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__RATE".into(), "1000000".into()),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__PER_SECS".into(), "1".into()),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__BURST".into(), "1000000".into()),
        ("LATCH__RATELIMIT__AUTH_FAILURES__RATE".into(), "1000000".into()),
        ("LATCH__RATELIMIT__AUTH_FAILURES__PER_SECS".into(), "1".into()),
        ("LATCH__RATELIMIT__AUTH_FAILURES__BURST".into(), "1000000".into()),
        ("LATCH__RATELIMIT__JWKS__RATE".into(), "1000000".into()),
        ("LATCH__RATELIMIT__JWKS__PER_SECS".into(), "1".into()),
        ("LATCH__RATELIMIT__JWKS__BURST".into(), "1000000".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::load_from("test", None, vars).unwrap();
    if std::env::var("TEST_LOG").is_ok() {
        server::telemetry::init(&settings);
    }
    let clock = Arc::new(ManualClock::new(START));
    let app = Application::build(&settings, clock.clone()).await.unwrap();
    let latch = app.latch.clone();
    let created = latch.create_project("Acme", Environment::Test).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    Some(TestApp {
        base,
        client: reqwest::Client::new(),
        project_id: created.project.id,
        secret: created.secret,
        key,
        clock,
        latch,
        db_url,
        handle,
        drop_database,
        _dir: dir,
    })
}

/// Runs one statement against the Postgres server (as the `DATABASE_URL` user).
pub async fn admin_sql(url: &str, sql: &str) {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(url).await.unwrap();
    conn.execute_unprepared(sql).await.unwrap();
    conn.close().await.unwrap();
}

impl TestApp {
    /// Stops the server and drops its database.
    pub async fn finish(self) {
        self.handle.stop(true).await;
        if let Some((url, name)) = self.drop_database {
            admin_sql(&url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.project_id, &self.secret, method, path, body)
            .await
    }

    pub async fn call_as(
        &self,
        id: &str,
        secret: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .basic_auth(id, Some(secret));
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().await.unwrap()).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Reply {
        reply(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn create_user(&self, email: &str) -> String {
        let r = self.post("/v1/users", json!({"email": email})).await;
        r.assert_ok()["user_id"].as_str().unwrap().to_owned()
    }

    /// Creates a TOTP; returns (totp_id, secret bytes, recovery codes).
    pub async fn create_totp(&self, user_id: &str) -> (String, Vec<u8>, Vec<String>) {
        let r = self.post("/v1/totps", json!({"user_id": user_id})).await;
        let b = r.assert_ok();
        let secret = data_encoding::BASE32_NOPAD
            .decode(b["secret"].as_str().unwrap().as_bytes())
            .unwrap();
        let codes = b["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        (b["totp_id"].as_str().unwrap().to_owned(), secret, codes)
    }

    /// The code for the current step + `offset`.
    pub fn code(&self, secret: &[u8], offset: i64) -> String {
        use domain::clock::Clock;
        let step = (self.clock.now() / 30 + offset) as u64;
        domain::totp::code_at_step(secret, step, 30, 6).unwrap()
    }

    /// A well-formed code that matches none of the steps the server accepts now or at the
    /// next step.
    pub fn wrong_code(&self, secret: &[u8]) -> String {
        let taken: Vec<String> = (-1..=2).map(|o| self.code(secret, o)).collect();
        (0..10)
            .map(|i| format!("00000{i}"))
            .find(|c| !taken.contains(c))
            .unwrap()
    }

    pub async fn authenticate(&self, user_id: &str, code: &str) -> Reply {
        self.post(
            "/v1/totps/authenticate",
            json!({"user_id": user_id, "totp_code": code}),
        )
        .await
    }

    pub async fn recover(&self, user_id: &str, code: &str) -> Reply {
        self.post(
            "/v1/totps/recover",
            json!({"user_id": user_id, "recovery_code": code}),
        )
        .await
    }

    pub async fn get_user(&self, user_id: &str) -> Reply {
        self.call(Method::GET, &format!("/v1/users/{user_id}"), None)
            .await
    }
}

async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} for body {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    Reply {
        status,
        body,
        headers,
    }
}

/// Runs one test body against a fresh app on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        $crate::on_both_backends!($name, &[]);
    };
    ($name:ident, $extra:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app_with(
                    $crate::helpers::Backend::Sqlite,
                    stringify!($name),
                    $extra,
                )
                .await
                .unwrap();
                super::$name(&app).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_app_with(
                    $crate::helpers::Backend::Postgres,
                    stringify!($name),
                    $extra,
                )
                .await
                else {
                    return;
                };
                super::$name(&app).await;
                app.finish().await;
            }
        }
    };
}
