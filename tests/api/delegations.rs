//! Delegations: validation, one active at a time, paging caps, ownership (B1).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{error_body, spawn_app, spawn_app_with};

const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

fn delegation(active: bool) -> Value {
    json!({"delegate_address": ADDRESS, "signed_delegation_data": "0xsigned", "is_active": active})
}

#[tokio::test]
async fn storing_listing_and_the_single_active_delegation() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    let active: Value = app
        .get_json("/api/v1/auth/delegation/active", &a.access)
        .await;
    assert_eq!(active, Value::Null);

    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = app
            .authed(
                Method::POST,
                "/api/v1/auth/delegation",
                &a.access,
                Some(&delegation(true)),
            )
            .await;
        assert_eq!(r.status(), 200);
        let d: Value = r.json().await.unwrap();
        assert_eq!(d["user_id"], a.id);
        assert_eq!(d["is_active"], true);
        assert_eq!(d["expiry"], Value::Null);
        ids.push(d["id"].as_i64().unwrap());
    }
    let list: Value = app.get_json("/api/v1/auth/delegation", &a.access).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|d| d["is_active"] == true).count(), 1);
    let active: Value = app
        .get_json("/api/v1/auth/delegation/active", &a.access)
        .await;
    assert_eq!(active["id"], ids[2], "the newest one is active");

    let page: Value = app
        .get_json("/api/v1/auth/delegation?skip=1&limit=1", &a.access)
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], ids[1]);
}

#[tokio::test]
async fn paging_is_capped_and_validated() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    for q in [
        "limit=0",
        "limit=101",
        "limit=1000000",
        "skip=-1",
        "limit=abc",
        "skip=1e3",
    ] {
        let r = app
            .authed(
                Method::GET,
                &format!("/api/v1/auth/delegation?{q}"),
                &a.access,
                None,
            )
            .await;
        assert_eq!(r.status(), 422, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"][0], "query", "{q}: {body}");
    }
}

#[tokio::test]
async fn bad_delegations_are_422() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    for bad in [
        json!({"delegate_address": "0x123", "signed_delegation_data": "x"}),
        json!({"delegate_address": ADDRESS, "signed_delegation_data": ""}),
        json!({"delegate_address": ADDRESS}),
        json!({"delegate_address": ADDRESS, "signed_delegation_data": "x", "expiry": "tomorrow"}),
        json!({"delegate_address": ADDRESS, "signed_delegation_data": "x", "user_id": 1}),
    ] {
        let r = app
            .authed(
                Method::POST,
                "/api/v1/auth/delegation",
                &a.access,
                Some(&bad),
            )
            .await;
        assert_eq!(r.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn a_configured_gateway_address_is_enforced() {
    let app = spawn_app_with(|s| {
        s.gateway_delegate_address = Some("0x0000000000000000000000000000000000000001".into());
    })
    .await;
    let a = app.seed_user().await;
    let r = app
        .authed(
            Method::POST,
            "/api/v1/auth/delegation",
            &a.access,
            Some(&delegation(true)),
        )
        .await;
    let body = error_body(r, 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("0x0000000000000000000000000000000000000001")
    );
}

/// B1: delegations of other users cannot be seen or deleted.
#[tokio::test]
async fn delegations_belong_to_their_owner() {
    let app = spawn_app().await;
    let a = app.seed_user().await;
    let b = app.seed_user().await;
    let d: Value = app
        .authed(
            Method::POST,
            "/api/v1/auth/delegation",
            &a.access,
            Some(&delegation(true)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = d["id"].as_i64().unwrap();
    let r = app
        .delete(&format!("/api/v1/auth/delegation/{id}"), &b.access)
        .await;
    assert_eq!(error_body(r, 404).await["detail"], "Delegation not found");
    let b_list: Value = app.get_json("/api/v1/auth/delegation", &b.access).await;
    assert_eq!(b_list, json!([]));

    let r = app
        .delete(&format!("/api/v1/auth/delegation/{id}"), &a.access)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .delete(&format!("/api/v1/auth/delegation/{id}"), &a.access)
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_user_stores_at_most_the_configured_number_of_delegations() {
    let app = spawn_app_with(|s| s.max_delegations_per_user = 3).await;
    let a = app.seed_user().await;
    let b = app.seed_user().await;
    let store = |token: String, active: bool| {
        let app = &app;
        async move {
            app.authed(
                Method::POST,
                "/api/v1/auth/delegation",
                &token,
                Some(&delegation(active)),
            )
            .await
        }
    };
    let mut ids = Vec::new();
    for active in [true, false, true] {
        let r = store(a.access.clone(), active).await;
        assert_eq!(r.status(), 200);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    for active in [true, false] {
        let body = error_body(store(a.access.clone(), active).await, 409).await;
        assert_eq!(
            body["detail"],
            "You already store 3 delegations; delete one before storing another"
        );
    }
    let list: Value = app.get_json("/api/v1/auth/delegation", &a.access).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    // Another user's count is their own.
    assert_eq!(store(b.access.clone(), true).await.status(), 200);

    let r = app
        .delete(&format!("/api/v1/auth/delegation/{}", ids[0]), &a.access)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(store(a.access.clone(), true).await.status(), 200);
}

#[tokio::test]
async fn a_signed_delegation_longer_than_the_configured_size_is_refused() {
    let app = spawn_app_with(|s| s.max_delegation_chars = 100).await;
    let a = app.seed_user().await;
    let with_data = |data: String| json!({"delegate_address": ADDRESS, "signed_delegation_data": data, "is_active": true});
    // Counted in characters: 100 two-byte ones fit.
    for fits in ["x".repeat(100), "é".repeat(100)] {
        let r = app
            .authed(
                Method::POST,
                "/api/v1/auth/delegation",
                &a.access,
                Some(&with_data(fits)),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = app
        .authed(
            Method::POST,
            "/api/v1/auth/delegation",
            &a.access,
            Some(&with_data("x".repeat(101))),
        )
        .await;
    let body = error_body(r, 422).await;
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "signed_delegation_data"])
    );
    assert_eq!(body["detail"][0]["type"], "string_too_long");
}
