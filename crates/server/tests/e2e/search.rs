//! Users search (spec §2.3): every filter alone and combined, pagination that returns each user
//! exactly once, and bad queries answered with 400s, on SQLite and Postgres.

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn ids(r: &Reply) -> BTreeSet<String> {
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/users/search", body).await
}

async fn each_filter_alone_and_combined(app: &TestApp) {
    let mk = |email: &str, extra: Value| {
        let mut b = json!({"email": email});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let create = |b: Value| async move {
        app.post("/v1/users", b).await.assert_ok()["user_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ada = create(mk(
        "ada@lovelace.org",
        json!({"name": {"first_name": "Ada", "last_name": "Lovelace"}, "phone_number": "+15555550101"}),
    ))
    .await;
    app.clock.advance(1);
    let alan = create(mk(
        "alan@turing.org",
        json!({"name": {"first_name": "Alan", "middle_name": "Mathison", "last_name": "Turing"}}),
    ))
    .await;
    app.clock.advance(1);
    let grace = create(mk(
        "grace@hopper.mil",
        json!({"create_user_as_pending": true, "phone_number": "+15555550102"}),
    ))
    .await;
    app.clock.advance(1);
    let t_start = domain::clock::rfc3339(START);
    let t_second = domain::clock::rfc3339(START + 1);
    // Ada: verified TOTP; Alan: pending TOTP; Grace: none.
    let (ada_totp, secret, _) = app.create_totp(&ada).await;
    app.authenticate(&ada, &app.code(&secret, 0)).await.assert_ok();
    let (alan_totp, _, _) = app.create_totp(&alan).await;
    let ada_email_id = app.get_user(&ada).await.body["emails"][0]["email_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grace_phone_id = app.get_user(&grace).await.body["phone_numbers"][0]["phone_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let one = |name: &str, value: Value| json!({"query": {"operator": "AND", "operands": [{"filter_name": name, "filter_value": value}]}});
    let set = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    for (body, want) in [
        (json!({}), set(&[&ada, &alan, &grace])),
        (one("totp_verified", json!(true)), set(&[&ada])),
        (one("totp_verified", json!(false)), set(&[&alan])),
        (one("totp_id", json!([alan_totp])), set(&[&alan])),
        (one("status", json!("pending")), set(&[&grace])),
        (one("user_id", json!([ada, grace])), set(&[&ada, &grace])),
        (one("full_name_fuzzy", json!("ada love")), set(&[&ada])),
        (one("full_name_fuzzy", json!("MATHISON")), set(&[&alan])),
        (one("email_address", json!(["ALAN@turing.org"])), set(&[&alan])),
        (one("email_address_fuzzy", json!("lovelace")), set(&[&ada])),
        (one("email_address_fuzzy", json!("%")), set(&[])),
        (one("email_id", json!([ada_email_id])), set(&[&ada])),
        (one("email_verified", json!(false)), set(&[&ada, &alan, &grace])),
        (one("phone_number", json!(["+15555550102"])), set(&[&grace])),
        (one("phone_number_fuzzy", json!("55501")), set(&[&ada, &grace])),
        (one("phone_id", json!([grace_phone_id])), set(&[&grace])),
        (one("phone_verified", json!(true)), set(&[])),
        (
            one("created_at_greater_than", json!(t_start)),
            set(&[&alan, &grace]),
        ),
        (one("created_at_less_than", json!(t_second)), set(&[&ada])),
        (
            one(
                "created_at_between",
                json!({"greater_than": domain::clock::rfc3339(START), "less_than": domain::clock::rfc3339(START + 2)}),
            ),
            set(&[&alan]),
        ),
        (
            json!({"query": {"operator": "AND", "operands": [
            {"filter_name": "phone_number_fuzzy", "filter_value": "5550"},
            {"filter_name": "totp_verified", "filter_value": true}]}}),
            set(&[&ada]),
        ),
        (
            json!({"query": {"operator": "OR", "operands": [
            {"filter_name": "status", "filter_value": "pending"},
            {"filter_name": "totp_id", "filter_value": [ada_totp]}]}}),
            set(&[&ada, &grace]),
        ),
    ] {
        let r = search(app, body.clone()).await;
        r.assert_ok();
        assert_eq!(ids(&r), want, "{body}");
        assert_eq!(r.body["results_metadata"]["total"], want.len(), "{body}");
        assert_eq!(r.body["results_metadata"]["next_cursor"], Value::Null);
    }
    // Full User objects come back.
    let r = search(app, one("user_id", json!([ada]))).await;
    assert_eq!(r.body["results"][0]["totps"][0]["verified"], true);
    assert_eq!(
        r.body["results"][0]["phone_numbers"][0]["phone_number"],
        "+15555550101"
    );

    // Another project sees none of them.
    let other = app
        .latch
        .create_project("Other", domain::ids::Environment::Test)
        .await
        .unwrap();
    let r = app
        .call_as(
            &other.project.id,
            &other.secret,
            Method::POST,
            "/v1/users/search",
            Some(json!({})),
        )
        .await;
    assert_eq!(r.assert_ok()["results"], json!([]));

    // Bad queries.
    for (body, error_type) in [
        (json!({"limit": 0}), "user_search_invalid_limit"),
        (json!({"limit": 1001}), "user_search_invalid_limit"),
        (json!({"cursor": "garbage"}), "user_search_invalid_cursor"),
        (one("nope", json!(1)), "user_search_filter_name_not_recognized"),
        (
            one("oauth_provider", json!("google")),
            "user_search_filter_not_supported",
        ),
        (
            one("totp_verified", json!("yes")),
            "user_search_invalid_filter_value",
        ),
        (
            one("totp_id", json!("totp-test-x")),
            "user_search_invalid_filter_value",
        ),
        (
            one("created_at_greater_than", json!("yesterday")),
            "user_search_invalid_filter_value",
        ),
        (
            json!({"query": {"operator": "XOR", "operands": []}}),
            "user_search_invalid_filter_value",
        ),
        (json!({"query": [1]}), "user_search_invalid_filter_value"),
        (json!({"limit": "10"}), "bad_request"),
    ] {
        search(app, body.clone()).await.assert_error(400, error_type);
    }
    // A cursor of another project, or a tampered one, is refused.
    let r = search(app, json!({"limit": 1})).await;
    let cursor = r.body["results_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call_as(
        &other.project.id,
        &other.secret,
        Method::POST,
        "/v1/users/search",
        Some(json!({"cursor": cursor})),
    )
    .await
    .assert_error(400, "user_search_invalid_cursor");
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    search(app, json!({"cursor": String::from_utf8(tampered).unwrap()}))
        .await
        .assert_error(400, "user_search_invalid_cursor");
}
on_both_backends!(each_filter_alone_and_combined);

async fn walking_the_cursor_returns_every_user_exactly_once(app: &TestApp) {
    // 2,500 users, many sharing a creation second, some created while the walk is under way.
    let mut created = BTreeSet::new();
    for batch in 0..25 {
        let futures = (0..100).map(|i| {
            let email = format!("walk-{batch}-{i}@example.com");
            async move {
                app.latch
                    .create_user(
                        &domain::model::Project {
                            id: app.project_id.clone(),
                            env: domain::ids::Environment::Test,
                            name: "Acme".into(),
                        },
                        domain::service::CreateUser {
                            email: Some(email),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap()
                    .id
            }
        });
        created.extend(futures::future::join_all(futures).await);
        if batch % 5 == 0 {
            app.clock.advance(1);
        }
    }
    assert_eq!(created.len(), 2500);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"limit": 1000});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = search(app, body).await;
        r.assert_ok();
        assert_eq!(
            r.body["results_metadata"]["total"].as_u64().unwrap() as usize,
            2500 + pages
        );
        seen.extend(
            ids(&r)
                .into_iter()
                .collect::<Vec<_>>()
                .into_iter()
                .map(|s| (s, pages)),
        );
        pages += 1;
        // A user created mid-walk (later than everything) shows up at the end, once.
        let late = app.create_user(&format!("late-{pages}@example.com")).await;
        created.insert(late);
        match r.body["results_metadata"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the walk does not end");
    }
    let distinct: BTreeSet<String> = seen.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(distinct.len(), seen.len(), "a user was returned twice");
    assert!(distinct.len() >= 2500);
    assert!(distinct.iter().all(|u| created.contains(u)));
    assert!(
        created.iter().filter(|u| !distinct.contains(*u)).count() <= 1,
        "only the very last late user may be missed"
    );
}
on_both_backends!(walking_the_cursor_returns_every_user_exactly_once);
