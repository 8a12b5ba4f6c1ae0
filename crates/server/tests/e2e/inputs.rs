//! Every bad input gets its status and `error_type` (spec §5.15), in the envelope with a
//! request id; never a 500; and nothing changes (no failure is counted).

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

async fn bad_inputs_get_stytch_errors_and_change_nothing(app: &TestApp) {
    let uid = app.create_user("inputs@example.com").await;
    let (totp_id, secret, _) = app.create_totp(&uid).await;
    app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();
    let url = |p: &str| format!("{}{}", app.base, p);
    let c = &app.client;

    // Credentials.
    let authn = "/v1/totps/authenticate";
    app.raw(c.post(url(authn)).json(&json!({})))
        .await
        .assert_error(401, "unauthorized_credentials");
    app.raw(c.post(url(authn)).bearer_auth(&app.secret).json(&json!({})))
        .await
        .assert_error(401, "unauthorized_credentials");
    app.raw(
        c.post(url(authn))
            .header("authorization", "Basic %%%")
            .json(&json!({})),
    )
    .await
    .assert_error(401, "unauthorized_credentials");
    app.call_as(
        &app.project_id,
        "secret-test-wrong",
        Method::POST,
        authn,
        Some(json!({})),
    )
    .await
    .assert_error(401, "unauthorized_credentials");
    let unknown = domain::ids::mint(domain::ids::Kind::Project, domain::ids::Environment::Test);
    app.call_as(&unknown, &app.secret, Method::POST, authn, Some(json!({})))
        .await
        .assert_error(401, "unauthorized_credentials");
    app.call_as("not-a-project", &app.secret, Method::POST, authn, Some(json!({})))
        .await
        .assert_error(401, "unauthorized_credentials");

    // Routes and methods come before credentials.
    app.raw(c.get(url("/v1/nothing/here")))
        .await
        .assert_error(404, "route_not_found");
    app.raw(c.get(url("/")))
        .await
        .assert_error(404, "route_not_found");
    app.raw(c.get(url("/v1/totps")))
        .await
        .assert_error(405, "method_not_allowed");
    app.call(Method::PATCH, &format!("/v1/users/{uid}"), None)
        .await
        .assert_error(405, "method_not_allowed");

    // Bodies.
    let raw_body = |b: &'static str| {
        c.post(url(authn))
            .basic_auth(&app.project_id, Some(&app.secret))
            .header("content-type", "application/json")
            .body(b)
    };
    for b in ["{", "[]", "", "null", "\"x\"", "{\"user_id\": \"a\",}"] {
        app.raw(raw_body(b)).await.assert_error(400, "bad_request");
    }
    let big = c
        .post(url("/v1/users"))
        .basic_auth(&app.project_id, Some(&app.secret))
        .json(&json!({"email": "big@example.com", "untrusted_metadata": {"x": "y".repeat(2 << 20)}}));
    app.raw(big).await.assert_error(413, "request_too_large");

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            authn,
            json!({"user_id": uid, "totp_code": 123456}),
            400,
            "bad_request",
        ),
        (authn, json!({"totp_code": "123456"}), 400, "bad_request"),
        (
            authn,
            json!({"user_id": null, "totp_code": "123456"}),
            400,
            "bad_request",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "١٢٣٤٥٦"}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "１２３４５６"}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "+12345"}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "12345 "}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "1234567"}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": ""}),
            400,
            "invalid_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "ckss-2skx-ebow"}),
            400,
            "recovery_code_used_as_totp_code",
        ),
        (
            authn,
            json!({"user_id": uid, "totp_code": "123456", "session_duration_minutes": 0}),
            400,
            "invalid_session_duration_minutes",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": 18_446_744_073_709_551_615u64}),
            400,
            "invalid_expiration",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": 10.5}),
            400,
            "bad_request",
        ),
        (
            authn,
            json!({"user_id": "user-test-123", "totp_code": "123456"}),
            400,
            "invalid_user_id",
        ),
        (
            authn,
            json!({"user_id": "has space", "totp_code": "123456"}),
            400,
            "invalid_user_id",
        ),
        (
            authn,
            json!({"user_id": "x".repeat(129), "totp_code": "123456"}),
            400,
            "invalid_user_id",
        ),
        (
            authn,
            json!({"user_id": uid.replace("-test-", "-live-"), "totp_code": "123456"}),
            400,
            "live_id_used_in_test_environment",
        ),
        (
            authn,
            json!({"user_id": domain::ids::mint(domain::ids::Kind::User, domain::ids::Environment::Test),
            "totp_code": "123456"}),
            404,
            "user_not_found",
        ),
        (
            authn,
            json!({"user_id": "no-such-external-id", "totp_code": "123456"}),
            404,
            "user_not_found",
        ),
        (
            "/v1/totps/recover",
            json!({"user_id": uid, "recovery_code": "123456"}),
            400,
            "totp_code_used_as_recovery_code",
        ),
        (
            "/v1/totps/recover",
            json!({"user_id": uid, "recovery_code": "abc"}),
            400,
            "invalid_recovery_code",
        ),
        (
            "/v1/totps/recover",
            json!({"user_id": uid, "recovery_code": 5}),
            400,
            "bad_request",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": 4}),
            400,
            "invalid_expiration",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": 1441}),
            400,
            "invalid_expiration",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": "10"}),
            400,
            "bad_request",
        ),
        (
            "/v1/totps",
            json!({"user_id": uid, "expiration_minutes": 1e300}),
            400,
            "invalid_expiration",
        ),
        (
            "/v1/totps/recovery_codes",
            json!({"user_id": ["x"]}),
            400,
            "bad_request",
        ),
        (
            "/v1/users",
            json!({"email": "not-an-email"}),
            400,
            "invalid_email",
        ),
        (
            "/v1/users",
            json!({"phone_number": "5555550100"}),
            400,
            "invalid_phone_number",
        ),
        (
            "/v1/users",
            json!({"name": {"first_name": "No"}}),
            400,
            "invalid_create_user_request",
        ),
        (
            "/v1/users",
            json!({"email": "inputs@example.com"}),
            400,
            "duplicate_email",
        ),
        (
            "/v1/users",
            json!({"email": "e1@example.com", "external_id": "user-test-abc"}),
            400,
            "invalid_external_id",
        ),
        (
            "/v1/users",
            json!({"email": "e2@example.com", "external_id": "a/b"}),
            400,
            "invalid_external_id",
        ),
        (
            "/v1/users",
            json!({"email": "e3@example.com", "trusted_metadata":
            (0..21).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            400,
            "metadata_too_many_keys",
        ),
        (
            "/v1/users",
            json!({"email": "e4@example.com", "untrusted_metadata": {"k": "v".repeat(5000)}}),
            400,
            "metadata_too_large",
        ),
        (
            "/v1/users",
            json!({"email": "e5@example.com", "trusted_metadata": [1]}),
            400,
            "bad_request",
        ),
    ];
    for (path, body, status, error_type) in cases {
        let r = app.post(path, body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{path} {body}: {}", r.body);
        r.assert_error(status, error_type);
        if error_type == "bad_request" && body.get("totp_code").is_some_and(Value::is_number) {
            assert!(
                r.body["error_message"].as_str().unwrap().contains("totp_code"),
                "{}",
                r.body
            );
        }
    }
    let missing = app.post(authn, json!({"totp_code": "123456"})).await;
    assert!(
        missing.body["error_message"]
            .as_str()
            .unwrap()
            .contains("user_id"),
        "{}",
        missing.body
    );

    // Path ids.
    app.call(Method::GET, "/v1/users/user-test-nope", None)
        .await
        .assert_error(400, "invalid_user_id");
    app.call(Method::DELETE, "/v1/users/totps/totp-test-x", None)
        .await
        .assert_error(400, "invalid_totp_id");
    let live_totp = totp_id.replace("-test-", "-live-");
    app.call(Method::DELETE, &format!("/v1/users/totps/{live_totp}"), None)
        .await
        .assert_error(400, "live_id_used_in_test_environment");

    // null for an optional field is absent.
    let r = app
        .post(
            "/v1/users",
            json!({"email": "nulls@example.com", "name": null, "external_id": null,
        "trusted_metadata": null, "create_user_as_pending": null}),
        )
        .await;
    r.assert_ok();
    assert!(
        r.body["user"].get("external_id").is_none(),
        "absent external_id is omitted"
    );

    // Nothing above counted as a failure: nine wrong codes still leave the user unlocked.
    let wrong = &app.wrong_code(&secret);
    for _ in 0..9 {
        app.authenticate(&uid, wrong)
            .await
            .assert_error(401, "unable_to_authenticate_totp");
    }
    app.authenticate(&uid, &app.code(&secret, 1)).await.assert_ok();
    let u = app.get_user(&uid).await;
    assert_eq!(u.body["is_locked"], false);
    assert_eq!(u.body["totps"][0]["totp_id"], totp_id);
}
on_both_backends!(bad_inputs_get_stytch_errors_and_change_nothing);
