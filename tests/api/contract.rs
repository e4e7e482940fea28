//! The served document is the contract, and the routes are exactly the documented operations.

use serde_json::Value;

use crate::contract_diff::contract_diff;
use crate::helpers::{contract, spawn_app};

#[tokio::test]
async fn the_served_document_means_the_same_as_openapi_yaml() {
    let app = spawn_app().await;
    let served: Value = app.get_public_json("/api/v1/openapi.json").await;
    let diff = contract_diff(&served, contract());
    assert!(
        diff.is_empty(),
        "the served document drifted from openapi.yaml:\n{}",
        diff.join("\n")
    );
}

/// Every operation of the spec is routed: its method on its path never falls through to the
/// unmatched-route handler (which answers 404 "Not Found" or 405).
#[tokio::test]
async fn every_spec_operation_is_routed_and_other_methods_get_405() {
    let app = spawn_app().await;
    let ops = contract()["paths"].as_object().unwrap();
    for (path, item) in ops {
        let concrete = path
            .replace("{key_id}", "1")
            .replace("{delegation_id}", "1");
        let mut allowed = Vec::new();
        for (method, _) in item.as_object().unwrap() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            allowed.push(m.as_str().to_owned());
            let r = app
                .client
                .request(m.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                status != 405 && !(status == 404 && body["detail"] == "Not Found"),
                "{m} {path} is not routed ({status} {body})"
            );
        }
        for probe in ["PATCH", "PUT", "DELETE", "GET", "POST"] {
            if allowed.iter().any(|a| a == probe) {
                continue;
            }
            let m = reqwest::Method::from_bytes(probe.as_bytes()).unwrap();
            let r = app
                .client
                .request(m, app.url(&concrete))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{probe} {path}");
            let allow = r.headers()["allow"].to_str().unwrap().to_owned();
            for a in &allowed {
                assert!(
                    allow.contains(a.as_str()),
                    "Allow {allow:?} lacks {a} on {path}"
                );
            }
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["detail"], "Method Not Allowed");
        }
    }
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/auth/keys/", "/api/v1/auth/registerx"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"], "Not Found");
    }
}

#[tokio::test]
async fn swagger_ui_is_served_offline() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/docs")).send().await.unwrap();
    assert!(r.status().is_redirection());
    let r = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let r = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the Swagger UI assets are vendored");
    let r = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("/api/v1/openapi.json"));
}
