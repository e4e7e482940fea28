//! Upstream text never reaches a client, and reaches our log only with its secrets redacted:
//! a corpus of error texts (`tests/fixtures/upstream_leaks.tsv`) is fed through every path an
//! upstream error takes (chat as JSON and as a stream, before and after the first event, the
//! session routes, the catalogue), as the node's own `{"error"}` text, as a bare body, and as
//! a provider's `providerModelError` (the one text a client may see, sanitised).

use morpheus_router_sim::{Fault, FaultKind, FaultRoute};
use serde_json::json;

use crate::log_capture;
use crate::market::{MarketApp, spawn_market_app};
use crate::models::LLAMA_ID;
use crate::upstream_faults::{request, warmed_user};

fn corpus() -> Vec<(&'static str, &'static str)> {
    include_str!("../fixtures/upstream_leaks.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('\t').expect("secret, tab, text"))
        .collect()
}

/// The ways one text can come back from the node.
fn faults(text: &str) -> Vec<(&'static str, FaultKind)> {
    let status = |status, body: String| FaultKind::Status {
        status,
        body,
        content_type: None,
    };
    let node = json!({ "error": text }).to_string();
    let provider = json!({"error": {
        "message": text, "type": "invalid_request_error", "param": null, "code": null
    }})
    .to_string();
    vec![
        ("node 400", status(400, node.clone())),
        ("node 500", status(500, node)),
        ("bare 502", status(502, text.to_owned())),
        (
            "provider 400",
            FaultKind::BackendError {
                status: 400,
                body: provider,
            },
        ),
        (
            "provider 503 text",
            FaultKind::BackendError {
                status: 503,
                body: text.to_owned(),
            },
        ),
    ]
}

async fn client_sees(app: &MarketApp, key: &str, route: FaultRoute, stream: bool) -> String {
    let r = match route {
        FaultRoute::Chat => app.chat(key, &request("leak?", stream)).await,
        FaultRoute::OpenSession => {
            app.post_with_key(
                "/api/v1/session/modelsession?model_id=llama-3.3-70b",
                key,
                Some(&json!({"sessionDuration": 600})),
            )
            .await
        }
        FaultRoute::CloseSession => app.close_session(key, None).await,
        FaultRoute::RatedBids => app
            .client
            .get(app.url(&format!("/api/v1/models/ratedbids?model_id={LLAMA_ID}")))
            .send()
            .await
            .unwrap(),
        other => unreachable!("{other:?}"),
    };
    let status = r.status().as_u16();
    format!("{status} {}", r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn no_upstream_secret_reaches_a_client_or_the_log() {
    log_capture::install();
    let app = spawn_market_app().await;
    let user = warmed_user(&app).await;
    let key = user.api_key.as_str();
    let mut leaks = Vec::new();
    let mut checked = 0;
    for (secret, text) in corpus() {
        let mut cases: Vec<(String, FaultRoute, bool, FaultKind)> = Vec::new();
        for (how, kind) in faults(text) {
            for stream in [false, true] {
                cases.push((
                    format!("chat {how} stream={stream}"),
                    FaultRoute::Chat,
                    stream,
                    kind.clone(),
                ));
            }
        }
        cases.push((
            "chat error after 2 events".into(),
            FaultRoute::Chat,
            true,
            FaultKind::ErrorAfterChunks {
                chunks: 2,
                error: Some(text.to_owned()),
            },
        ));
        let node = json!({ "error": text }).to_string();
        for route in [
            FaultRoute::OpenSession,
            FaultRoute::CloseSession,
            FaultRoute::RatedBids,
        ] {
            cases.push((
                format!("{route:?} node 500"),
                route,
                false,
                FaultKind::Status {
                    status: 500,
                    body: node.clone(),
                    content_type: None,
                },
            ));
        }
        for (label, route, stream, kind) in cases {
            app.sim.clear_faults();
            app.sim.set_fault(Fault {
                route,
                kind,
                times: None,
            });
            let seen = client_sees(&app, key, route, stream).await;
            checked += 1;
            if seen.contains(secret) {
                leaks.push(format!("{label}: {text:?} → {seen}"));
            }
            // A closed session must not let the next case open a new one through the fault.
            if route == FaultRoute::CloseSession {
                app.sim.clear_faults();
            }
        }
    }
    app.sim.clear_faults();
    println!(
        "{checked} error answers checked over {} texts",
        corpus().len()
    );
    assert!(leaks.is_empty(), "{leaks:#?}");

    let logs = log_capture::captured();
    let in_log: Vec<&str> = corpus()
        .into_iter()
        .filter(|(secret, _)| logs.contains(secret))
        .map(|(secret, _)| secret)
        .collect();
    assert!(in_log.is_empty(), "secrets in the log: {in_log:?}");
}
