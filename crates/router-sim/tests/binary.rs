//! The `morpheus-router-sim` binary: announces its address, serves, stops on SIGTERM.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test]
async fn binary_announces_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_morpheus-router-sim"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--user",
            "u",
            "--password",
            "p",
            "--no-done-marker",
            "--chunk-delay-ms",
            "1",
            "--session-concurrency",
            "0",
            "--min-session-seconds",
            "0",
            "--open-latency-ms",
            "1",
            "--first-token-ms",
            "1",
            "--per-token-ms",
            "1",
            "--usage-without-include-usage",
            "--no-node-usage-fields",
            "--no-rewrite",
            "--honour-failover",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("morpheus-router-sim listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let http = common::client();
    let health: Value = http
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    let resp = http
        .get(format!("{base}/wallet"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The flags took: a 60 s session is accepted, the stream has the old simulator's usage
    // chunk and no [DONE], and `stop` as a string reaches the "provider" unchanged.
    let opened: Value = http
        .post(format!(
            "{base}/blockchain/models/{}/session",
            morpheus_router_sim::LLAMA_MODEL_ID
        ))
        .basic_auth("u", Some("p"))
        .json(&serde_json::json!({"sessionDuration": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = opened["sessionID"].as_str().unwrap();
    let text = http
        .post(format!("{base}/v1/chat/completions"))
        .basic_auth("u", Some("p"))
        .header("session_id", sid)
        .json(&serde_json::json!({"stream": true, "stop": "x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\""), "{text}");
    assert!(
        !text.contains("[DONE]") && !text.contains("usage_from"),
        "{text}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
