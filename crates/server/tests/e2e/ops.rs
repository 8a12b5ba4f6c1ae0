//! Operations: `/healthz`, `/readyz` with per-check detail, Prometheus `/metrics`, the database
//! going away and coming back (through a TCP proxy the test controls), the production profile's
//! refusals, HTTPS with rustls, and graceful shutdown of the binary under load.

use crate::helpers::*;
use crate::proxy::Proxy;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let r = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_tell_what_happened() {
    let extra = [
        ("LATCH__LOCK__MAX_FAILURES", "2"),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__RATE", "1"),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__PER_SECS", "60"),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__BURST", "3"),
    ];
    let app = spawn_app_with(Backend::Sqlite, "ops_metrics", &extra)
        .await
        .unwrap();
    let (status, body) = get(&app, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"]["ok"], true);
    assert!(ready["checks"].get("redis").is_none(), "no Redis configured");

    let before = get(&app, "/metrics").await.1;
    let count = |m: &str, name: &str, labels: &[&str]| sample(m, name, labels).unwrap_or(0.0);
    // A replay, a lockout (two failures), then the user's attempt bucket runs dry.
    let uid = app.create_user("ops@example.com").await;
    let (_, secret, _) = app.create_totp(&uid).await;
    let code = app.code(&secret, 0);
    app.authenticate(&uid, &code).await.assert_ok();
    app.authenticate(&uid, &code)
        .await
        .assert_error(400, "totp_code_already_authenticated");
    app.authenticate(&uid, &app.wrong_code(&secret))
        .await
        .assert_error(401, "unable_to_authenticate_totp");
    app.authenticate(&uid, &app.wrong_code(&secret))
        .await
        .assert_error(429, "too_many_requests");
    let (status, after) = get(&app, "/metrics").await;
    assert_eq!(status, 200);

    let users = [r#"route="/v1/users""#, r#"status="200""#, r#"method="POST""#];
    assert!(
        count(&after, "latch_http_requests_total", &users) >= 1.0,
        "{after}"
    );
    let totp_auth = r#"route="/v1/totps/authenticate""#;
    assert!(
        count(
            &after,
            "latch_http_requests_total",
            &[totp_auth, r#"status="429""#]
        ) > count(
            &before,
            "latch_http_requests_total",
            &[totp_auth, r#"status="429""#]
        )
    );
    assert!(
        count(&after, "latch_http_request_duration_seconds_count", &[totp_auth]) >= 4.0,
        "latency histogram: {after}"
    );
    assert!(after.contains(
        r#"latch_http_request_duration_seconds_bucket{route="/v1/totps/authenticate",le="0.005"}"#
    ));
    for (name, labels) in [
        ("latch_replays_rejected_total", &[r#"factor="totp""#][..]),
        ("latch_user_lockouts_total", &[][..]),
        (
            "latch_ratelimit_rejections_total",
            &[r#"policy="user_attempts""#][..],
        ),
    ] {
        assert!(
            count(&after, name, labels) > count(&before, name, labels),
            "{name} went up: {after}"
        );
    }
    assert!(sample(&after, "latch_db_pool_connections", &[r#"state="idle""#]).is_some());
    assert_eq!(sample(&after, "latch_db_pool_max_connections", &[]), Some(4.0));
    // Paths become route patterns: no user id ever appears as a label.
    assert!(!after.contains(&uid));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_makes_the_replica_unready_and_it_recovers_without_a_restart() {
    let test = "postgres_cut";
    let Some(url) = postgres_url(test) else {
        return;
    };
    // postgres://user@host:port/db → host:port, and the same URL through the proxy.
    let (head, _) = url.rsplit_once('/').unwrap();
    let (scheme_user, host_port) = head.rsplit_once('@').unwrap_or(("postgres://", head));
    let name = format!("latch_e2e_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&url, &format!("CREATE DATABASE {name}")).await;
    let proxy = Proxy::start(host_port).await;
    let sep = if scheme_user.ends_with("://") { "" } else { "@" };
    let via_proxy = format!("{scheme_user}{sep}127.0.0.1:{}/{name}", proxy.port);
    let extra = [
        ("LATCH__DATABASE__URL", via_proxy.as_str()),
        ("LATCH__DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
    ];
    let app = spawn_app_with(Backend::Sqlite, test, &extra).await.unwrap();
    let uid = app.create_user("cut@example.com").await;
    assert_eq!(get(&app, "/readyz").await.0, 200);

    proxy.cut();
    let started = Instant::now();
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let unready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(unready["status"], "unready");
    assert_eq!(unready["checks"]["database"]["ok"], false);
    assert!(
        !unready["checks"]["database"]["detail"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    app.get_user(&uid).await.assert_error(503, "service_unavailable");
    app.post("/v1/users", json!({"email": "during@example.com"}))
        .await
        .assert_error(503, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answers stay bounded"
    );
    assert_eq!(get(&app, "/healthz").await.0, 200, "alive, though not ready");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&app, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "ready again once Postgres is back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.get_user(&uid).await.assert_ok();
    app.post("/v1/users", json!({"email": "after@example.com"}))
        .await
        .assert_ok();
    app.finish().await;
    drop(proxy);
    admin_sql(&url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

#[test]
fn production_refuses_plain_http_without_tls_or_a_declared_proxy() {
    use server::settings::Settings;
    let base = |extra: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = vec![
            ("LATCH__KEYS__ACTIVE".into(), "k1".into()),
            (
                "LATCH__KEYS__RING__K1".into(),
                domain::crypto::KeyRing::generate_key().unwrap(),
            ),
            ("LATCH__BOOTSTRAP__FIRST_PROJECT".into(), "false".into()),
        ];
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::load_from("production", None, v)
    };
    let err = base(&[]).err().unwrap().to_string();
    assert!(
        err.contains("plain HTTP") && err.contains("behind_tls_proxy"),
        "{err}"
    );
    assert!(base(&[("LATCH__SERVER__BEHIND_TLS_PROXY", "true")]).is_ok());
    assert!(
        base(&[
            ("LATCH__SERVER__TLS_CERT_FILE", "/etc/latch/cert.pem"),
            ("LATCH__SERVER__TLS_KEY_FILE", "/etc/latch/key.pem"),
        ])
        .is_ok()
    );
    let err = base(&[("LATCH__SERVER__TLS_CERT_FILE", "/etc/latch/cert.pem")])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("set both or neither"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let (ca, ca_key, cert, key) = (path("ca.pem"), path("ca.key"), path("cert.pem"), path("key.pem"));
    // A CA, and a certificate for localhost that it signs (webpki refuses a CA as end entity).
    for args in [
        vec!["-subj", "/CN=Latch test CA", "-keyout", &ca_key, "-out", &ca],
        vec![
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    ] {
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl made a certificate");
    }
    let extra = [
        ("LATCH__SERVER__TLS_CERT_FILE", cert.as_str()),
        ("LATCH__SERVER__TLS_KEY_FILE", key.as_str()),
    ];
    let app = spawn_app_with(Backend::Sqlite, "tls", &extra).await.unwrap();
    let port = app.base.rsplit(':').next().unwrap();
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], port.parse().unwrap()).into())
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://localhost:{port}/v1/users/user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6"
        ))
        .basic_auth(&app.project_id, Some(&app.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "answered over TLS");
    // Plain HTTP to the TLS port gets no answer.
    let plain = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    app.finish().await;
}
