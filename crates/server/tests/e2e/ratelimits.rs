//! Rate limits (spec §5.7): project × route buckets with `X-RateLimit-*` headers and 429s,
//! per-user attempt throttling, the Redis backend shared by two servers, and the outage policy.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

fn small<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("LATCH__RATELIMIT__PROJECT_ROUTE__RATE", "1"),
        ("LATCH__RATELIMIT__PROJECT_ROUTE__PER_SECS", "60"),
        ("LATCH__RATELIMIT__PROJECT_ROUTE__BURST", "3"),
    ];
    v.extend_from_slice(extra);
    v
}

fn header(r: &Reply, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_route_bucket_refuses_with_429_and_says_so_in_headers() {
    let app = spawn_app_with(Backend::Sqlite, "ratelimit_project_route", &small(&[]))
        .await
        .unwrap();
    let uid = app.create_user("rl@example.com").await; // 1st POST /v1/users
    let path = format!("/v1/users/{uid}");
    let r = app.call(Method::GET, &path, None).await;
    r.assert_ok();
    assert_eq!(header(&r, "x-ratelimit-limit"), "3");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "2");
    assert_eq!(app.call(Method::GET, &path, None).await.status, 200);
    assert_eq!(
        header(&app.call(Method::GET, &path, None).await, "x-ratelimit-remaining"),
        "0"
    );
    let r = app.call(Method::GET, &path, None).await;
    r.assert_error(429, "too_many_requests");
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    // Another route of the same project has its own bucket; so has another project.
    app.post("/v1/users", json!({"email": "rl2@example.com"}))
        .await
        .assert_ok();
    let other = app
        .latch
        .create_project("Other", domain::ids::Environment::Test)
        .await
        .unwrap();
    let r = app
        .call_as(&other.project.id, &other.secret, Method::GET, &path, None)
        .await;
    r.assert_error(404, "user_not_found");
    // Refusals need credentials first: a wrong secret is a 401, never a 429.
    app.call_as(&app.project_id, "secret-test-no", Method::GET, &path, None)
        .await
        .assert_error(401, "unauthorized_credentials");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_throttled_per_user() {
    let extra = [
        ("LATCH__RATELIMIT__USER_ATTEMPTS__RATE", "1"),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__PER_SECS", "60"),
        ("LATCH__RATELIMIT__USER_ATTEMPTS__BURST", "2"),
    ];
    let app = spawn_app_with(Backend::Sqlite, "ratelimit_user_attempts", &extra)
        .await
        .unwrap();
    let (a, b) = (
        app.create_user("a@example.com").await,
        app.create_user("b@example.com").await,
    );
    let (_, secret, _) = app.create_totp(&a).await;
    app.create_totp(&b).await;
    app.authenticate(&a, "000000").await;
    app.authenticate(&a, "000001").await;
    // The third attempt within the minute is refused before the code is looked at.
    let r = app.authenticate(&a, &app.code(&secret, 0)).await;
    r.assert_error(429, "too_many_requests");
    app.recover(&a, "aaaa-bbbb-cccc")
        .await
        .assert_error(429, "too_many_requests");
    // Another user is not affected, and the refused attempts were not counted as failures.
    app.authenticate(&b, "000000")
        .await
        .assert_error(401, "unable_to_authenticate_totp");
    assert_eq!(app.get_user(&a).await.body["is_locked"], false);
    app.finish().await;
}

/// A request as if forwarded for `client` by the proxy at 127.0.0.1.
async fn from_client(app: &TestApp, client: &str, secret: &str, path: &str) -> Reply {
    app.raw(
        app.client
            .get(format!("{}{path}", app.base))
            .basic_auth(&app.project_id, Some(secret))
            .header("x-forwarded-for", format!("198.51.100.1, {client}")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_client_ip() {
    let per_ip = [
        ("LATCH__RATELIMIT__AUTH_FAILURES__RATE", "1"),
        ("LATCH__RATELIMIT__AUTH_FAILURES__PER_SECS", "60"),
        ("LATCH__RATELIMIT__AUTH_FAILURES__BURST", "3"),
    ];
    let mut trusting = per_ip.to_vec();
    trusting.push(("LATCH__SERVER__TRUSTED_PROXIES", "127.0.0.0/8"));
    let app = spawn_app_with(Backend::Sqlite, "ratelimit_auth_failures", &trusting)
        .await
        .unwrap();
    let path = "/v1/users/user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6";
    let (guesser, neighbour) = ("203.0.113.5", "203.0.113.6");
    // Successes do not count.
    for _ in 0..5 {
        from_client(&app, guesser, &app.secret, path)
            .await
            .assert_error(404, "user_not_found");
    }
    for _ in 0..3 {
        from_client(&app, guesser, "secret-test-wrong", path)
            .await
            .assert_error(401, "unauthorized_credentials");
    }
    // The bucket is used up: refused before the secret is looked at, even the right one.
    let r = from_client(&app, guesser, &app.secret, path).await;
    r.assert_error(429, "too_many_requests");
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    from_client(&app, guesser, "secret-test-wrong", path)
        .await
        .assert_error(429, "too_many_requests");
    // Another client behind the same proxy is not affected.
    from_client(&app, neighbour, &app.secret, path)
        .await
        .assert_error(404, "user_not_found");
    app.finish().await;

    // With no trusted proxy, X-Forwarded-For is the client's own claim and is ignored: every
    // request is the peer's, 127.0.0.1.
    let app = spawn_app_with(Backend::Sqlite, "ratelimit_auth_failures_untrusted", &per_ip)
        .await
        .unwrap();
    for _ in 0..3 {
        from_client(&app, guesser, "secret-test-wrong", path)
            .await
            .assert_error(401, "unauthorized_credentials");
    }
    from_client(&app, neighbour, &app.secret, path)
        .await
        .assert_error(429, "too_many_requests");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_jwks_route_is_limited_per_client_ip() {
    let extra = [
        ("LATCH__RATELIMIT__JWKS__RATE", "1"),
        ("LATCH__RATELIMIT__JWKS__PER_SECS", "60"),
        ("LATCH__RATELIMIT__JWKS__BURST", "2"),
        ("LATCH__SERVER__TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let app = spawn_app_with(Backend::Sqlite, "ratelimit_jwks", &extra)
        .await
        .unwrap();
    let path = format!("/v1/sessions/jwks/{}", app.project_id);
    let get = |client: &'static str| {
        app.raw(
            app.client
                .get(format!("{}{path}", app.base))
                .header("x-forwarded-for", client),
        )
    };
    get("203.0.113.5").await.assert_ok();
    get("203.0.113.5").await.assert_ok();
    get("203.0.113.5").await.assert_error(429, "too_many_requests");
    get("203.0.113.6").await.assert_ok();
    app.finish().await;
}

fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if require_services() => panic!("{test}: REDIS_URL is not set and services are required (CI=true)"),
        _ => {
            eprintln!("SKIPPED (no Redis: set REDIS_URL): {test}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_admit_one_quota_together() {
    let Some(url) = redis_url("two_servers_sharing_redis_admit_one_quota_together") else {
        return;
    };
    let prefix = format!("latch:rl:e2e-{}:", uuid::Uuid::new_v4().simple());
    let extra = small(&[
        ("REDIS_URL", url.as_str()),
        ("LATCH__RATELIMIT__PREFIX", prefix.as_str()),
    ]);
    let one = spawn_app_with(Backend::Sqlite, "redis_one", &extra)
        .await
        .unwrap();
    // The second server shares the first one's database (two replicas of one deployment).
    let mut extra_two = extra.clone();
    extra_two.push(("LATCH__DATABASE__URL", one.db_url.as_str()));
    let two = spawn_app_with(Backend::Sqlite, "redis_two", &extra_two)
        .await
        .unwrap();
    let p = one
        .latch
        .create_project("Shared", domain::ids::Environment::Test)
        .await
        .unwrap();
    let path = "/v1/users/user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6";
    let mut admitted = 0;
    for i in 0..8 {
        let server = if i % 2 == 0 { &one } else { &two };
        let r = server
            .call_as(&p.project.id, &p.secret, Method::GET, path, None)
            .await;
        match r.status.as_u16() {
            404 => admitted += 1,
            429 => {}
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(admitted, 3, "two servers together admit one burst of 3");
    // A second project is not affected.
    let q = one
        .latch
        .create_project("Second", domain::ids::Environment::Test)
        .await
        .unwrap();
    assert_eq!(
        one.call_as(&q.project.id, &q.secret, Method::GET, path, None)
            .await
            .status
            .as_u16(),
        404
    );
    one.finish().await;
    two.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_follows_the_outage_policy() {
    // Nothing listens on port 1: Redis is "down" from the start, and answers never hang.
    let down = [
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("LATCH__RATELIMIT__REDIS_TIMEOUT_MS", "200"),
    ];
    let local = spawn_app_with(Backend::Sqlite, "outage_local", &small(&down))
        .await
        .unwrap();
    local.create_user("o@example.com").await; // served, limited in process
    let path = "/v1/users/user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6";
    let codes: Vec<u16> = futures::future::join_all((0..3).map(|_| local.call(Method::GET, path, None)))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 404).count(), 3, "{codes:?}");
    local
        .call(Method::GET, path, None)
        .await
        .assert_error(429, "too_many_requests");
    local.finish().await;

    let mut closed = small(&down);
    closed.push(("LATCH__RATELIMIT__OUTAGE", "fail_closed"));
    let closed_app = spawn_app_with(Backend::Sqlite, "outage_fail_closed", &closed)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    closed_app
        .call(Method::GET, path, None)
        .await
        .assert_error(503, "service_unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded by the timeout"
    );
    closed_app.finish().await;
}

/// Polls `path` until it answers `status` (the limiter reconnects by itself), for at most 10 s.
async fn until_status(app: &TestApp, path: &str, status: u16) -> Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.call(Method::GET, path, None).await;
        if r.status.as_u16() == status || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_mid_test_then_back_without_a_restart() {
    let Some(url) = redis_url("redis_cut_mid_test_then_back_without_a_restart") else {
        return;
    };
    let upstream = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let direct = redis::Client::open(url.as_str()).unwrap();
    let mut direct = direct.get_multiplexed_async_connection().await.unwrap();
    let path = "/v1/users/user-test-16d9ba61-97a1-4ba4-9720-b03761dc50c6";

    for policy in ["fail_closed", "local"] {
        let proxy = super::proxy::Proxy::start(&upstream).await;
        let via_proxy = format!("redis://127.0.0.1:{}", proxy.port);
        let prefix = format!("latch:rl:e2e-{}:", uuid::Uuid::new_v4().simple());
        let extra = small(&[
            ("REDIS_URL", via_proxy.as_str()),
            ("LATCH__RATELIMIT__PREFIX", prefix.as_str()),
            ("LATCH__RATELIMIT__OUTAGE", policy),
            ("LATCH__RATELIMIT__REDIS_TIMEOUT_MS", "200"),
            ("LATCH__RATELIMIT__PROJECT_ROUTE__BURST", "4"),
        ]);
        let app = spawn_app_with(Backend::Sqlite, "redis_cut", &extra)
            .await
            .unwrap();
        app.call(Method::GET, path, None)
            .await
            .assert_error(404, "user_not_found");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "the bucket lives in Redis: {keys:?}");

        proxy.cut();
        let started = std::time::Instant::now();
        let r = app.call(Method::GET, path, None).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "bounded by the timeout"
        );
        // Readiness says so: with `fail_closed` Redis is required, with `local` it is not.
        let ready = app
            .client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap();
        let ready_status = ready.status().as_u16();
        let ready: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(ready["checks"]["redis"]["ok"], false, "{ready}");
        assert_eq!(
            ready_status,
            if policy == "fail_closed" { 503 } else { 200 },
            "{ready}"
        );
        if policy == "fail_closed" {
            r.assert_error(503, "service_unavailable");
        } else {
            // Limited in this process alone: a fresh local bucket of 4.
            r.assert_error(404, "user_not_found");
            for _ in 0..3 {
                app.call(Method::GET, path, None)
                    .await
                    .assert_error(404, "user_not_found");
            }
            app.call(Method::GET, path, None)
                .await
                .assert_error(429, "too_many_requests");
        }

        // Redis comes back having forgotten the script (as after a restart): EVALSHA's
        // NOSCRIPT makes the limiter load it again.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut direct)
            .await
            .unwrap();
        proxy.restore();
        let r = until_status(&app, path, 404).await;
        r.assert_error(404, "user_not_found");
        // Shared again: the Redis bucket (1 used before the cut) is what counts.
        let remaining = r.headers["x-ratelimit-remaining"].to_str().unwrap().to_owned();
        assert_eq!(remaining, "2", "{policy}: the Redis bucket is in use again");
        app.finish().await;
    }
}
