//! Automation settings, reached with an API key.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn put(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url("/api/v1/automation/settings"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn defaults_on_first_read_then_partial_updates() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let s: Value = app
        .client
        .get(app.url("/api/v1/automation/settings"))
        .bearer_auth(&user.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["is_enabled"], false);
    assert_eq!(s["session_duration"], 3600);
    assert_eq!(s["user_id"], user.id);

    let s: Value = put(&app, &user.api_key, json!({"is_enabled": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s["is_enabled"].clone(), s["session_duration"].clone()),
        (json!(true), json!(3600))
    );
    let s: Value = put(&app, &user.api_key, json!({"session_duration": 600}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s["is_enabled"].clone(), s["session_duration"].clone()),
        (json!(true), json!(600))
    );
    let s: Value = put(&app, &user.api_key, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        s["session_duration"], 600,
        "an empty update changes nothing"
    );
}

#[tokio::test]
async fn durations_outside_five_minutes_to_a_day_are_422() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    // Under 300 s the marketplace contract reverts the open.
    for d in [
        json!(60),
        json!(299),
        json!(86401),
        json!(-1),
        json!("300"),
        json!(1e20),
    ] {
        let r = put(&app, &user.api_key, json!({"session_duration": d})).await;
        assert_eq!(r.status(), 422, "{d}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "session_duration"]),
            "{body}"
        );
    }
    for ok in [300, 86400] {
        assert_eq!(
            put(&app, &user.api_key, json!({"session_duration": ok}))
                .await
                .status(),
            200
        );
    }
}
