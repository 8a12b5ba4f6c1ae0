//! Whole user + TOTP journeys as an application would drive them.

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::Method;
use serde_json::json;

async fn enrol_authenticate_recover_and_delete(app: &TestApp) {
    // A pending user with an external id.
    let r = app
        .post(
            "/v1/users",
            json!({"email": "Ada@Example.com", "external_id": "crm|42", "create_user_as_pending": true,
                   "name": {"first_name": "Ada"}, "trusted_metadata": {"plan": "pro"}}),
        )
        .await;
    let b = r.assert_ok();
    let uid = b["user_id"].as_str().unwrap().to_owned();
    assert!(uid.starts_with("user-test-"));
    assert_eq!(b["status"], "pending");
    assert_eq!(b["phone_id"], "");
    assert_eq!(b["user"]["emails"][0]["email"], "ada@example.com");
    assert_eq!(
        b["user"]["name"],
        json!({"first_name": "Ada", "middle_name": "", "last_name": ""})
    );
    assert_eq!(b["user"]["roles"], json!(["stytch_user"]));
    assert_eq!(b["user"]["lock_created_at"], json!(null));

    // Enrol through the external id; the TOTP starts unverified.
    let r = app
        .post(
            "/v1/totps",
            json!({"user_id": "crm|42", "expiration_minutes": 10}),
        )
        .await;
    let b = r.assert_ok().clone();
    let totp_id = b["totp_id"].as_str().unwrap().to_owned();
    assert!(totp_id.starts_with("totp-test-"));
    assert!(
        b["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBORw0KGgo")
    );
    assert_eq!(
        b["user"]["totps"],
        json!([{"totp_id": totp_id, "verified": false}])
    );
    let secret = data_encoding::BASE32_NOPAD
        .decode(b["secret"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(secret.len(), 20);
    let codes: Vec<String> = b["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(codes.len(), 10);

    // Recovery codes of an unverified TOTP cannot be spent yet.
    app.recover(&uid, &codes[0])
        .await
        .assert_error(401, "unable_to_authenticate_recovery_code");

    // Authenticate: verified, user active, no session.
    let r = app.authenticate(&uid, &app.code(&secret, 0)).await;
    let b = r.assert_ok();
    assert_eq!(b["totp_id"], totp_id);
    assert_eq!(b["session_token"], "");
    assert_eq!(b["session_jwt"], "");
    assert_eq!(b["session"], json!(null));
    assert_eq!(b["user"]["status"], "active");
    assert_eq!(b["user"]["totps"][0]["verified"], true);

    // The same code again is a replay; the next step's code is fine.
    app.authenticate(&uid, &app.code(&secret, 0))
        .await
        .assert_error(400, "totp_code_already_authenticated");
    app.authenticate(&uid, &app.code(&secret, -1))
        .await
        .assert_error(400, "totp_code_already_authenticated");
    app.authenticate(&uid, &app.code(&secret, 1)).await.assert_ok();
    // Two steps away is outside the window.
    app.clock.advance(30 * 3);
    app.authenticate(&uid, &app.code(&secret, 2))
        .await
        .assert_error(401, "unable_to_authenticate_totp");

    // A verified TOTP blocks a new create and does not expire.
    app.post("/v1/totps", json!({"user_id": uid}))
        .await
        .assert_error(400, "active_totp_exists");
    app.clock.advance(86_400 * 30);

    // Recovery codes: all ten, in order, then one spent.
    let r = app
        .post("/v1/totps/recovery_codes", json!({"user_id": "crm|42"}))
        .await;
    let b = r.assert_ok();
    assert_eq!(b["totps"][0]["totp_id"], totp_id);
    assert_eq!(b["totps"][0]["recovery_codes"], json!(codes));
    let r = app.recover(&uid, &codes[3].to_uppercase()).await;
    assert_eq!(r.assert_ok()["totp_id"], totp_id);
    app.recover(&uid, &codes[3])
        .await
        .assert_error(401, "unable_to_authenticate_recovery_code");
    let r = app
        .post("/v1/totps/recovery_codes", json!({"user_id": uid}))
        .await;
    let left = r.assert_ok()["totps"][0]["recovery_codes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(left, 9);

    // Get by id and by external id, Python-style query string included.
    let by_id = app.get_user(&uid).await;
    let by_ext = app
        .call(Method::GET, "/v1/users/crm%7C42?user_id=crm%7C42", None)
        .await;
    assert_eq!(by_id.assert_ok()["user_id"], by_ext.assert_ok()["user_id"]);
    assert_eq!(by_id.body["external_id"], "crm|42");
    assert_eq!(by_id.body["trusted_metadata"], json!({"plan": "pro"}));

    // Update: metadata merges, null deletes, Python's extra user_id is ignored.
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/users/{uid}"),
            Some(
                json!({"user_id": uid, "trusted_metadata": {"plan": null, "seats": 3},
                        "name": {"first_name": null, "last_name": "Lovelace"}}),
            ),
        )
        .await;
    let b = r.assert_ok();
    assert_eq!(b["user"]["trusted_metadata"], json!({"seats": 3}));
    assert_eq!(b["user"]["name"]["first_name"], "Ada");
    assert_eq!(b["user"]["name"]["last_name"], "Lovelace");
    assert_eq!(b["emails"][0]["email"], "ada@example.com");

    // Delete the TOTP: gone from the user, codes gone, a new create works.
    let r = app
        .call(Method::DELETE, &format!("/v1/users/totps/{totp_id}"), None)
        .await;
    assert_eq!(r.assert_ok()["user"]["totps"], json!([]));
    app.call(Method::DELETE, &format!("/v1/users/totps/{totp_id}"), None)
        .await
        .assert_error(404, "totp_not_found");
    app.authenticate(&uid, &app.code(&secret, 0))
        .await
        .assert_error(404, "totps_not_found_for_user");
    let r = app
        .post("/v1/totps/recovery_codes", json!({"user_id": uid}))
        .await;
    assert_eq!(r.assert_ok()["totps"], json!([]));

    // Delete the user.
    let r = app.call(Method::DELETE, &format!("/v1/users/{uid}"), None).await;
    assert_eq!(r.assert_ok()["user_id"], uid);
    app.get_user(&uid).await.assert_error(404, "user_not_found");
}
on_both_backends!(enrol_authenticate_recover_and_delete);

async fn pending_totps_are_replaced_and_expire(app: &TestApp) {
    let uid = app.create_user("pending@example.com").await;
    let (first, first_secret, _) = app.create_totp(&uid).await;
    let r = app
        .post("/v1/totps", json!({"user_id": uid, "expiration_minutes": 5}))
        .await;
    let second = r.assert_ok()["totp_id"].as_str().unwrap().to_owned();
    let u = app.get_user(&uid).await;
    assert_eq!(
        u.assert_ok()["totps"],
        json!([{"totp_id": second, "verified": false}])
    );
    assert_ne!(first, second);
    // The replaced TOTP's codes no longer work anywhere.
    app.authenticate(&uid, &app.code(&first_secret, 0))
        .await
        .assert_error(401, "unable_to_authenticate_totp");
    // Unverified past its expiry: invisible and unusable.
    app.clock.advance(5 * 60 + 1);
    assert_eq!(app.get_user(&uid).await.assert_ok()["totps"], json!([]));
    app.authenticate(&uid, "123456")
        .await
        .assert_error(404, "totps_not_found_for_user");
    app.recover(&uid, "aaaa-bbbb-cccc")
        .await
        .assert_error(404, "totps_not_found_for_user");
    app.create_totp(&uid).await;
}
on_both_backends!(pending_totps_are_replaced_and_expire);

async fn projects_see_only_their_own_rows(app: &TestApp) {
    let other = app
        .latch
        .create_project("Other", domain::ids::Environment::Test)
        .await
        .unwrap();
    let uid = app.create_user("mine@example.com").await;
    let (totp_id, _, _) = app.create_totp(&uid).await;
    let (pid, sec) = (&other.project.id, &other.secret);
    app.call_as(pid, sec, Method::GET, &format!("/v1/users/{uid}"), None)
        .await
        .assert_error(404, "user_not_found");
    app.call_as(pid, sec, Method::DELETE, &format!("/v1/users/{uid}"), None)
        .await
        .assert_error(404, "user_not_found");
    app.call_as(
        pid,
        sec,
        Method::DELETE,
        &format!("/v1/users/totps/{totp_id}"),
        None,
    )
    .await
    .assert_error(404, "totp_not_found");
    app.call_as(
        pid,
        sec,
        Method::POST,
        "/v1/totps/recovery_codes",
        Some(json!({"user_id": uid})),
    )
    .await
    .assert_error(404, "user_not_found");
    // The same email is free in the other project.
    app.call_as(
        pid,
        sec,
        Method::POST,
        "/v1/users",
        Some(json!({"email": "mine@example.com"})),
    )
    .await
    .assert_ok();
    // A live project mints live ids and refuses test ids.
    let live = app
        .latch
        .create_project("Live", domain::ids::Environment::Live)
        .await
        .unwrap();
    assert!(live.secret.starts_with("secret-live-"));
    let r = app
        .call_as(
            &live.project.id,
            &live.secret,
            Method::POST,
            "/v1/users",
            Some(json!({"email": "l@example.com"})),
        )
        .await;
    assert!(
        r.assert_ok()["user_id"]
            .as_str()
            .unwrap()
            .starts_with("user-live-")
    );
    assert!(
        r.body["request_id"]
            .as_str()
            .unwrap()
            .starts_with("request-id-live-")
    );
    app.call_as(
        &live.project.id,
        &live.secret,
        Method::GET,
        &format!("/v1/users/{uid}"),
        None,
    )
    .await
    .assert_error(400, "test_id_used_in_live_environment");
}
on_both_backends!(projects_see_only_their_own_rows);
