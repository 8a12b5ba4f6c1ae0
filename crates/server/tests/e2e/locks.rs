//! The user lock after consecutive failures (spec §5.7, §5.16; R-N-6).

use crate::helpers::*;
use crate::on_both_backends;

async fn ten_failures_lock_the_user_even_against_a_correct_code(app: &TestApp) {
    let uid = app.create_user("locked@example.com").await;
    let (_, secret, codes) = app.create_totp(&uid).await;
    app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();
    let wrong = &app.wrong_code(&secret);

    // Nine failures, then a success: the counter starts again.
    for _ in 0..9 {
        app.authenticate(&uid, wrong)
            .await
            .assert_error(401, "unable_to_authenticate_totp");
    }
    app.authenticate(&uid, &app.code(&secret, 1)).await.assert_ok();
    assert_eq!(app.get_user(&uid).await.body["is_locked"], false);

    // Ten in a row, mixing kinds (a replay and a wrong recovery code count too).
    app.authenticate(&uid, &app.code(&secret, 1))
        .await
        .assert_error(400, "totp_code_already_authenticated");
    app.recover(&uid, "zzzz-zzzz-zzzz")
        .await
        .assert_error(401, "unable_to_authenticate_recovery_code");
    for _ in 0..8 {
        app.authenticate(&uid, wrong)
            .await
            .assert_error(401, "unable_to_authenticate_totp");
    }
    // Malformed input is not counted and changes nothing.
    app.authenticate(&uid, "12345")
        .await
        .assert_error(400, "invalid_totp_code");
    assert_eq!(app.get_user(&uid).await.body["is_locked"], true);

    // Locked: correct TOTP and valid recovery code both refused, with Retry-After.
    app.clock.advance(30);
    let r = app.authenticate(&uid, &app.code(&secret, 0)).await;
    r.assert_error(429, "user_lock_limit_reached");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    app.recover(&uid, &codes[0])
        .await
        .assert_error(429, "user_lock_limit_reached");
    let u = app.get_user(&uid).await;
    let b = u.assert_ok();
    assert_eq!(b["is_locked"], true);
    let created = b["lock_created_at"].as_str().unwrap();
    let expires = b["lock_expires_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && expires.ends_with('Z') && created < expires);

    // After the lock expires the user authenticates again and the lock fields clear.
    app.clock.advance(3600);
    app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();
    let u = app.get_user(&uid).await;
    assert_eq!(u.body["is_locked"], false);
    assert_eq!(u.body["lock_expires_at"], serde_json::json!(null));
    // The spent-while-locked recovery code was never consumed.
    app.recover(&uid, &codes[0]).await.assert_ok();
}
on_both_backends!(ten_failures_lock_the_user_even_against_a_correct_code);
