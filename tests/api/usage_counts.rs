//! Every answer's tokens are counted from the provider's own figures: the gateway asks every
//! stream for `stream_options.include_usage` (the node passes `usage` only then), shows the
//! closing usage chunk only to clients that asked for it, and never shows the node's own
//! `usage_from_provider` / `usage_from_consumer` members.

use serde_json::{Value, json};

use crate::market::{spawn_market_app, sse_events};
use crate::upstream_faults::request;

#[tokio::test]
async fn every_request_is_counted_from_the_providers_usage_and_clients_see_what_they_asked() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let key = user.api_key.as_str();
    const EACH: usize = 5;
    for asked in [false, true] {
        for n in 0..EACH {
            let mut body = request(&format!("count me {n}"), true);
            if asked {
                body["stream_options"] = json!({"include_usage": true});
            }
            let r = app.chat(key, &body).await;
            assert_eq!(r.status(), 200);
            let events = sse_events(r).await;
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            let chunks: Vec<Value> = events[..events.len() - 1]
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            let usage_chunks = chunks
                .iter()
                .filter(|c| c["choices"].as_array().is_some_and(Vec::is_empty))
                .count();
            assert_eq!(
                usage_chunks,
                usize::from(asked),
                "asked={asked}: {events:?}"
            );
            if asked {
                assert!(chunks.last().unwrap()["usage"]["completion_tokens"].is_u64());
            }
            assert!(
                events.iter().all(|e| !e.contains("usage_from_")),
                "the node's members are not shown: {events:?}"
            );
        }
    }
    for n in 0..EACH {
        let r = app.chat(key, &request(&format!("whole {n}"), false)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert!(body["usage"]["prompt_tokens"].is_u64(), "{body}");
        assert!(body.get("usage_from_provider").is_none(), "{body}");
        assert!(body.get("usage_from_consumer").is_none(), "{body}");
    }

    let total = 3 * EACH as i64;
    assert_eq!(app.wait_for_usage(user.id, total).await, total);
    let counted = app.count(&format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {} \
         AND prompt_tokens IS NOT NULL AND completion_tokens > 0 AND usage_source = 'usage'",
        user.id
    ));
    println!("{counted}/{total} usage records carry the provider's own token counts");
    assert_eq!(counted, total);
}

/// The node re-encodes chat bodies through go-openai (reference §2.5); what reaches the provider
/// must be what the client meant, and what the node would silently lose is refused up front.
#[tokio::test]
async fn the_provider_gets_what_the_client_meant_through_the_nodes_rewrite() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let key = user.api_key.as_str();
    let mut body = request("stop and be exact", false);
    body["stop"] = json!("END");
    body["temperature"] = json!(0);
    body["failover"] = json!(true);
    let r = app.chat(key, &body).await;
    // Forwarded as it was, the string `stop` was the node's 400 and `temperature: 0` vanished.
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let session = app.sim.session_ids().pop().expect("a session");
    let (forwarded, dropped) = app.sim.last_forwarded(&session).expect("forwarded");
    assert_eq!(forwarded["stop"], json!(["END"]));
    assert!(
        forwarded["temperature"]
            .as_f64()
            .is_some_and(|t| t > 0.0 && t < 1e-3)
    );
    assert!(
        forwarded.get("failover").is_none_or(|f| f == false),
        "{forwarded}"
    );
    assert!(dropped.is_empty(), "the node dropped {dropped:?}");
    assert_eq!(app.sim.counters().failovers, 0);

    let lossy = [
        (
            json!([{"type": "text", "text": "hear this"},
                   {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]),
            None,
            "messages[0].content[1].type",
        ),
        (json!("tagged"), Some(json!({"trace": 7})), "metadata.trace"),
    ];
    for (content, metadata, param) in lossy {
        let mut body = request("", false);
        body["messages"][0]["content"] = content;
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        let error = crate::market::openai_error(app.chat(key, &body).await, 400).await;
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some("unsupported_by_marketplace"), Some(param)),
            "{error}"
        );
    }
}
