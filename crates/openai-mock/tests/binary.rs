//! The `morpheus-openai-mock` binary: announces its address, serves, stops on SIGTERM.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::test]
async fn binary_announces_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_morpheus-openai-mock"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--chunk-delay-ms",
            "1",
            "--api-key",
            "sk-bin",
            "--name",
            "ollama-b",
            "--model",
            "qwen3:8b",
            "--model",
            "nomic-embed-text",
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
        .strip_prefix("morpheus-openai-mock listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let http = common::client();
    let resp = http.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let models: Value = http
        .get(format!("{base}/v1/models"))
        .bearer_auth("sk-bin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "qwen3:8b");
    assert_eq!(models["data"][1]["owned_by"], "ollama-b");
    let text = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-bin")
        .json(&json!({"model": "qwen3:8b", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

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
