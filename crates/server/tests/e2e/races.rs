//! Single use under concurrency (R-RC-1, R-OTP-4): many identical requests at once, one winner.

use crate::helpers::*;
use futures::future::join_all;

async fn spawn(backend: Backend, test: &str) -> Option<TestApp> {
    // A high lock threshold, so every loser is counted and answered as a plain failure.
    spawn_app_with(backend, test, &[("LATCH__LOCK__MAX_FAILURES", "100")]).await
}

async fn fifty_recovers_with_one_code_give_exactly_one_success(backend: Backend) {
    let Some(app) = spawn(backend, "fifty_recovers_with_one_code_give_exactly_one_success").await else {
        return;
    };
    for round in 0..3 {
        let uid = app.create_user(&format!("race{round}@example.com")).await;
        let (_, secret, codes) = app.create_totp(&uid).await;
        app.authenticate(&uid, &app.code(&secret, 0)).await.assert_ok();
        let replies = join_all((0..50).map(|_| app.recover(&uid, &codes[0]))).await;
        let wins = replies.iter().filter(|r| r.status.as_u16() == 200).count();
        assert_eq!(wins, 1, "round {round}");
        for r in replies.iter().filter(|r| r.status.as_u16() != 200) {
            r.assert_error(401, "unable_to_authenticate_recovery_code");
        }
        let left = app
            .post("/v1/totps/recovery_codes", serde_json::json!({"user_id": uid}))
            .await;
        assert_eq!(
            left.assert_ok()["totps"][0]["recovery_codes"]
                .as_array()
                .unwrap()
                .len(),
            9
        );
        app.clock.advance(30);
    }
    app.finish().await;
}

async fn twenty_authenticates_with_one_code_give_exactly_one_success(backend: Backend) {
    let Some(app) = spawn(
        backend,
        "twenty_authenticates_with_one_code_give_exactly_one_success",
    )
    .await
    else {
        return;
    };
    let uid = app.create_user("race-totp@example.com").await;
    let (_, secret, _) = app.create_totp(&uid).await;
    for round in 0..3 {
        let code = app.code(&secret, 0);
        let replies = join_all((0..20).map(|_| app.authenticate(&uid, &code))).await;
        assert_eq!(
            replies.iter().filter(|r| r.status.as_u16() == 200).count(),
            1,
            "round {round}"
        );
        for r in replies.iter().filter(|r| r.status.as_u16() != 200) {
            r.assert_error(400, "totp_code_already_authenticated");
        }
        app.clock.advance(30);
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_race_sqlite() {
    fifty_recovers_with_one_code_give_exactly_one_success(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_race_postgres() {
    fifty_recovers_with_one_code_give_exactly_one_success(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_race_sqlite() {
    twenty_authenticates_with_one_code_give_exactly_one_success(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_race_postgres() {
    twenty_authenticates_with_one_code_give_exactly_one_success(Backend::Postgres).await;
}
