//! Optional bearer auth, refused in OpenAI's words.

mod common;

use common::{chat_request, start_with};
use morpheus_openai_mock::MockConfig;
use serde_json::Value;

#[tokio::test]
async fn without_the_key_requests_are_401_in_openai_shape() {
    let mock = start_with(MockConfig {
        api_key: Some("sk-test".to_owned()),
        ..Default::default()
    })
    .await;

    let resp = mock
        .post("/v1/chat/completions", &chat_request("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], Value::Null);
    assert!(body["error"]["param"].is_null());

    let resp = mock
        .http
        .get(mock.url("/v1/models"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let resp = mock
        .post("/v1/chat/completions", &chat_request("hi"))
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = mock
        .post(
            "/v1/embeddings",
            &serde_json::json!({"model": "text-embedding-3-small", "input": "x"}),
        )
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The control surface needs no key.
    let (status, counters) = mock.get_json("/__mock/counters").await;
    assert_eq!(status, 200);
    assert_eq!(counters["unauthorized"], 2);
    assert_eq!(counters["requests"], 4);
}
