//! Sessions minted by authenticate and recover (spec §2.1, §2.4): tokens, RS256 JWTs verified
//! against the public JWKS, extension, revocation, expiry, and key rotation.

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

/// Verifies a JWT the way the SDKs do: signature against the served JWKS, then the claims.
async fn verify_with_jwks(app: &TestApp, jwt: &str) -> Result<Value, String> {
    let jwks: Value = app
        .client
        .get(format!("{}/v1/sessions/jwks/{}", app.base, app.project_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<domain::jwt::PublicJwk> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["kty"], "RSA");
            assert_eq!(k["alg"], "RS256");
            assert_eq!(k["use"], "sig");
            domain::jwt::PublicJwk {
                kid: k["kid"].as_str().unwrap().into(),
                n: k["n"].as_str().unwrap().into(),
                e: k["e"].as_str().unwrap().into(),
            }
        })
        .collect();
    domain::jwt::verify(jwt, &keys).map_err(|e| format!("{e:?}"))
}

async fn enrolled(app: &TestApp, email: &str) -> (String, Vec<u8>, Vec<String>) {
    let uid = app.create_user(email).await;
    let (_, secret, codes) = app.create_totp(&uid).await;
    (uid, secret, codes)
}

async fn authenticate_mints_a_session_that_verifies_extends_and_revokes(app: &TestApp) {
    let (uid, secret, codes) = enrolled(app, "sessions@example.com").await;
    let r = app
        .post(
            "/v1/totps/authenticate",
            json!({"user_id": uid, "totp_code": app.code(&secret, 0), "session_duration_minutes": 60,
                   "session_custom_claims": {"plan": "pro", "sub": "ignored"}}),
        )
        .await;
    let b = r.assert_ok().clone();
    let token = b["session_token"].as_str().unwrap().to_owned();
    let jwt = b["session_jwt"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 44);
    let s = &b["session"];
    let sid = s["session_id"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("session-test-"));
    assert_eq!(s["user_id"], uid);
    assert_eq!(s["authentication_factors"][0]["type"], "totp");
    assert_eq!(
        s["authentication_factors"][0]["delivery_method"],
        "authenticator_app"
    );
    assert_eq!(s["custom_claims"], json!({"plan": "pro"}));
    assert_eq!(s["roles"], json!(["stytch_user"]));

    // The JWT: header, claims, and a signature that verifies against the public JWKS.
    let claims = verify_with_jwks(app, &jwt).await.unwrap();
    assert_eq!(claims["sub"], uid);
    assert_eq!(claims["iss"], format!("stytch.com/{}", app.project_id));
    assert_eq!(claims["aud"], json!([app.project_id]));
    assert_eq!(claims["plan"], "pro");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(claims["https://stytch.com/session"]["id"], sid);
    let mut parts: Vec<&str> = jwt.split('.').collect();
    let forged = data_encoding::BASE64URL_NOPAD.encode(br#"{"sub":"user-test-x"}"#);
    parts[1] = &forged;
    assert!(verify_with_jwks(app, &parts.join(".")).await.is_err());

    // sessions/authenticate by token and by JWT (even expired); extension moves expires_at.
    let r = app
        .post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await;
    assert_eq!(r.assert_ok()["session"]["session_id"], sid);
    assert_eq!(r.body["session_token"], token);
    app.clock.advance(600);
    let r = app
        .post(
            "/v1/sessions/authenticate",
            json!({"session_jwt": jwt, "session_duration_minutes": 120}),
        )
        .await;
    let b = r.assert_ok();
    assert_eq!(b["session"]["session_id"], sid);
    assert_eq!(b["session_token"], "");
    let new_jwt = b["session_jwt"].as_str().unwrap();
    assert_ne!(new_jwt, jwt);
    let expires = b["session"]["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(expires, domain::clock::rfc3339(START + 600 + 7200));

    // A recovery code adds its factor to the same session.
    let r = app
        .post(
            "/v1/totps/recover",
            json!({"user_id": uid, "recovery_code": codes[0], "session_token": token}),
        )
        .await;
    let f = r.assert_ok()["session"]["authentication_factors"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(r.body["session"]["session_id"], sid);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1]["type"], "recovery_codes");
    assert_eq!(f[1]["delivery_method"], "recovery_code");

    // Listed, revoked, gone.
    let r = app
        .call(Method::GET, &format!("/v1/sessions?user_id={uid}"), None)
        .await;
    assert_eq!(r.assert_ok()["sessions"].as_array().unwrap().len(), 1);
    app.post("/v1/sessions/revoke", json!({"session_id": sid}))
        .await
        .assert_ok();
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_error(404, "session_not_found");
    app.post("/v1/sessions/authenticate", json!({"session_jwt": jwt}))
        .await
        .assert_error(404, "session_not_found");
    app.post("/v1/sessions/revoke", json!({"session_id": sid}))
        .await
        .assert_error(404, "session_not_found");
    let r = app
        .call(Method::GET, &format!("/v1/sessions?user_id={uid}"), None)
        .await;
    assert_eq!(r.assert_ok()["sessions"], json!([]));
    // Attaching to a revoked session fails and spends nothing.
    let code = app.code(&secret, 1);
    app.post(
        "/v1/totps/authenticate",
        json!({"user_id": uid, "totp_code": code, "session_token": token}),
    )
    .await
    .assert_error(404, "session_not_found");
    app.authenticate(&uid, &code).await.assert_ok();
}
on_both_backends!(authenticate_mints_a_session_that_verifies_extends_and_revokes);

async fn sessions_end_with_their_user_their_totp_or_their_time(app: &TestApp) {
    let start = |uid: String, secret: Vec<u8>, minutes: i64| async move {
        let r = app
            .post(
                "/v1/totps/authenticate",
                json!({"user_id": uid, "totp_code": app.code(&secret, 0), "session_duration_minutes": minutes}),
            )
            .await;
        r.assert_ok()["session_token"].as_str().unwrap().to_owned()
    };
    // Expiry: a 5-minute session is gone after 5 minutes.
    let (uid, secret, _) = enrolled(app, "expiry@example.com").await;
    let token = start(uid.clone(), secret.clone(), 5).await;
    app.clock.advance(299);
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_ok();
    app.clock.advance(1);
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_error(404, "session_not_found");

    // Deleting the TOTP that minted it ends it.
    let r = app.get_user(&uid).await;
    let totp_id = r.body["totps"][0]["totp_id"].as_str().unwrap().to_owned();
    app.clock.advance(30);
    let token = start(uid.clone(), secret, 60).await;
    app.call(Method::DELETE, &format!("/v1/users/totps/{totp_id}"), None)
        .await
        .assert_ok();
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_error(404, "session_not_found");

    // Deleting the user ends it.
    let (uid, secret, _) = enrolled(app, "gone@example.com").await;
    let token = start(uid.clone(), secret, 60).await;
    app.call(Method::DELETE, &format!("/v1/users/{uid}"), None)
        .await
        .assert_ok();
    app.post("/v1/sessions/authenticate", json!({"session_token": token}))
        .await
        .assert_error(404, "session_not_found");
}
on_both_backends!(sessions_end_with_their_user_their_totp_or_their_time);

async fn session_arguments_are_checked_before_any_code_is_spent(app: &TestApp) {
    let (uid, secret, codes) = enrolled(app, "args@example.com").await;
    let code = app.code(&secret, 0);
    let authn = "/v1/totps/authenticate";
    for (extra, status, error_type) in [
        (
            json!({"session_duration_minutes": 4}),
            400,
            "invalid_session_duration_minutes",
        ),
        (
            json!({"session_duration_minutes": 527_041}),
            400,
            "invalid_session_duration_minutes",
        ),
        (
            json!({"session_duration_minutes": 18_446_744_073_709_551_615u64}),
            400,
            "invalid_session_duration_minutes",
        ),
        (json!({"session_duration_minutes": 1.5}), 400, "bad_request"),
        (
            json!({"session_token": "x".repeat(44), "session_jwt": "a.b.c"}),
            400,
            "too_many_session_arguments",
        ),
        (json!({"session_token": "short"}), 400, "invalid_session_token"),
        (json!({"session_token": "A".repeat(44)}), 404, "session_not_found"),
        (
            json!({"session_jwt": "not-a-jwt"}),
            400,
            "unable_to_parse_session_jwt",
        ),
        (
            json!({"session_duration_minutes": 60, "session_custom_claims": {"k": "v".repeat(5000)}}),
            400,
            "custom_claims_too_large",
        ),
    ] {
        let mut body = json!({"user_id": uid, "totp_code": code});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.post(authn, body.clone())
            .await
            .assert_error(status, error_type);
        let mut rbody = json!({"user_id": uid, "recovery_code": codes[0]});
        rbody
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.post("/v1/totps/recover", rbody)
            .await
            .assert_error(status, error_type);
    }
    // Nothing was spent or counted: the same code still works.
    app.authenticate(&uid, &code).await.assert_ok();
    for (body, status, error_type) in [
        (json!({}), 400, "no_session_arguments"),
        (
            json!({"session_token": "x".repeat(44), "session_jwt": "a.b.c"}),
            400,
            "too_many_session_arguments",
        ),
        (json!({"session_jwt": "a.b"}), 400, "unable_to_parse_session_jwt"),
    ] {
        app.post("/v1/sessions/authenticate", body)
            .await
            .assert_error(status, error_type);
    }
    app.post("/v1/sessions/revoke", json!({}))
        .await
        .assert_error(400, "no_session_revoke_arguments");
    app.post(
        "/v1/sessions/revoke",
        json!({"session_id": "a", "session_token": "b"}),
    )
    .await
    .assert_error(400, "too_many_session_revoke_arguments");
    app.call(Method::GET, "/v1/sessions", None)
        .await
        .assert_error(400, "bad_request");
    // JWKS is public; an unknown project is a 404.
    let r = app
        .raw(
            app.client
                .get(format!("{}/v1/sessions/jwks/project-test-nope", app.base)),
        )
        .await;
    r.assert_error(404, "project_not_found");
    // Another project's session cannot be touched.
    let r = app
        .post(
            "/v1/totps/authenticate",
            json!({"user_id": uid, "totp_code": app.code(&secret, 1), "session_duration_minutes": 60}),
        )
        .await;
    let token = r.assert_ok()["session_token"].as_str().unwrap().to_owned();
    let other = app
        .latch
        .create_project("Other", domain::ids::Environment::Test)
        .await
        .unwrap();
    app.call_as(
        &other.project.id,
        &other.secret,
        Method::POST,
        "/v1/sessions/authenticate",
        Some(json!({"session_token": token})),
    )
    .await
    .assert_error(404, "session_not_found");
}
on_both_backends!(session_arguments_are_checked_before_any_code_is_spent);

async fn jwts_signed_before_a_key_rotation_keep_verifying(app: &TestApp) {
    let (uid, secret, _) = enrolled(app, "rotate@example.com").await;
    let r = app
        .post(
            "/v1/totps/authenticate",
            json!({"user_id": uid, "totp_code": app.code(&secret, 0), "session_duration_minutes": 60}),
        )
        .await;
    let old_jwt = r.assert_ok()["session_jwt"].as_str().unwrap().to_owned();
    let new_key = app.latch.rotate_signing_key(&app.project_id).await.unwrap();
    // The old JWT still verifies through JWKS (which now serves the new and the previous key).
    verify_with_jwks(app, &old_jwt).await.unwrap();
    app.post("/v1/sessions/authenticate", json!({"session_jwt": old_jwt}))
        .await
        .assert_ok();
    // New JWTs are signed with the new key.
    let r = app
        .post("/v1/sessions/authenticate", json!({"session_jwt": old_jwt}))
        .await;
    let new_jwt = r.body["session_jwt"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(new_jwt.split('.').next().unwrap().as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_key.kid);
    assert_eq!(header["typ"], "JWT");
    verify_with_jwks(app, new_jwt).await.unwrap();
}
on_both_backends!(jwts_signed_before_a_key_rotation_keep_verifying);
