//! The node answers every provider failure 400 `{"providerModelError": <backend body>}`
//! (reference §2.4); the gateway tells them apart by the body and answers what an OpenAI SDK
//! expects: the backend's rate limit is a 429 with its delay, the provider's own breakage a 502,
//! and only a request the model refuses is the client's 400.

use morpheus_router_sim::FaultKind;

use crate::market::{openai_error, spawn_market_app};
use crate::upstream_faults::{chat_fault, request, warmed_user};

#[tokio::test]
async fn provider_model_errors_map_to_the_status_an_sdk_expects() {
    let app = spawn_market_app().await;
    let user = warmed_user(&app).await;
    // (label, fault, status, code, type, Retry-After, words of the provider's message shown)
    let table = [
        (
            "rate limited, delay stated",
            FaultKind::backend_rate_limited(Some(20)),
            429,
            "provider_rate_limited",
            "rate_limit_error",
            Some("20"),
            Some("Rate limit reached"),
        ),
        (
            "rate limited",
            FaultKind::backend_rate_limited(None),
            429,
            "provider_rate_limited",
            "rate_limit_error",
            None,
            Some("Rate limit reached"),
        ),
        (
            "backend 500",
            FaultKind::backend_server_error(),
            502,
            "provider_error",
            "server_error",
            None,
            None,
        ),
        (
            "backend 503 (not JSON)",
            FaultKind::backend_unavailable(),
            502,
            "provider_error",
            "server_error",
            None,
            None,
        ),
        (
            "provider's backend key",
            FaultKind::backend_bad_key(),
            502,
            "provider_error",
            "server_error",
            None,
            None,
        ),
        (
            "provider's model access",
            FaultKind::backend_forbidden(),
            502,
            "provider_error",
            "server_error",
            None,
            None,
        ),
        (
            "provider's model unknown",
            FaultKind::backend_model_not_found(),
            502,
            "provider_error",
            "server_error",
            None,
            None,
        ),
        (
            "context too long",
            FaultKind::backend_context_length(),
            400,
            "provider_rejected",
            "invalid_request_error",
            None,
            Some("maximum context length is 128000 tokens"),
        ),
    ];
    let mut lines = Vec::new();
    for (label, fault, status, code, kind, retry_after, shown) in table {
        for stream in [false, true] {
            app.sim.clear_faults();
            app.sim.set_fault(chat_fault(fault.clone(), None));
            let r = app
                .chat(&user.api_key, &request("provider trouble", stream))
                .await;
            let got_retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(got_retry.as_deref(), retry_after, "{label} stream={stream}");
            let error = openai_error(r, status).await;
            assert_eq!(
                (error["code"].as_str(), error["type"].as_str()),
                (Some(code), Some(kind)),
                "{label} stream={stream}: {error}"
            );
            let message = error["message"].as_str().unwrap();
            match shown {
                Some(words) => assert!(message.contains(words), "{label}: {message}"),
                None => assert!(!message.contains("sk-proj"), "{label}: {message}"),
            }
            lines.push(format!("{label:<28} stream={stream:<5} → {status} {code}"));
        }
    }
    app.sim.clear_faults();
    println!("providerModelError mapping:\n{}", lines.join("\n"));
}
