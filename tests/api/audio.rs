//! `POST /api/v1/audio/speech` and `POST /api/v1/audio/transcriptions` against the simulator and
//! a plain provider: sessions of the route's model type, the same admission as chat, billed by
//! characters and audio seconds, one usage record per request, and the documented errors for
//! every bad form.

use morpheus_openai_mock::{Fault, FaultKind, FaultRoute, MockConfig, MockProvider};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::embeddings::usage_route;
use crate::helpers::TestApp;
use crate::market::{MarketApp, openai_error, sim_config, spawn_market_app_on};

const SPEAKER: &str = "tts-kokoro";
const LISTENER: &str = "whisper-1";
/// A hundred-thousandth of a USD per character, a thousandth per second.
const PRICES: &str = "[default]\ninput = 1\noutput = 1\n\n[speech]\nper_character = 0.00001\n\n[transcription]\nper_second = 0.001\n";

async fn audio_app(
    adjust: impl FnOnce(&mut morpheus_gateway::configuration::Settings),
) -> MarketApp {
    let prices = std::env::temp_dir().join(format!("prices-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&prices, PRICES).unwrap();
    spawn_market_app_on(sim_config(), move |s| {
        s.pricing_file = Some(prices);
        s.signup_credit_usd = "1".to_owned();
        s.chat_shed_lateness_ms = 0;
        adjust(s);
    })
    .await
}

/// A WAV file of silence: 16 kHz, mono, 16-bit, `ms` long.
fn wav(ms: u32) -> Vec<u8> {
    let data_len = ms * 32;
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(data_len + 36).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&16_000u32.to_le_bytes());
    w.extend_from_slice(&32_000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, 0);
    w
}

fn audio_part(bytes: Vec<u8>, name: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str("audio/wav")
        .unwrap()
}

/// A form with `fields` first, then the file (as the OpenAI SDKs send it).
fn form(fields: &[(&str, &str)], audio: Vec<u8>) -> Form {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    form.part("file", audio_part(audio, "speech.wav"))
}

impl TestApp {
    async fn speak(&self, key: &str, body: &Value) -> Response {
        self.post_with_key("/api/v1/audio/speech", key, Some(body))
            .await
    }

    async fn transcribe(&self, key: &str, form: Form) -> Response {
        self.client
            .post(self.url("/api/v1/audio/transcriptions"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }
}

fn content_type(r: &Response) -> String {
    r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn speech_is_relayed_in_its_format_and_billed_by_characters() {
    let app = audio_app(|_| {}).await;
    let user = app.seed_automated_user().await;
    let input = "Hello there, world.";
    let r = app
        .speak(
            &user.api_key,
            &json!({"model": SPEAKER, "input": input, "voice": "af_alloy", "response_format": "wav"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "audio/wav");
    let audio = r.bytes().await.unwrap();
    // 60 ms a character at 24 kHz, 16-bit, behind a 44-byte header.
    let samples_bytes = input.chars().count() * 60 * 48;
    assert_eq!(&audio[..4], b"RIFF");
    assert_eq!(audio.len(), 44 + samples_bytes);

    let usage = usage_route(&app, &user.api_key, 1).await;
    let charge = &usage["items"][0];
    assert_eq!(charge["model_name"], SPEAKER, "{usage}");
    assert_eq!(charge["tokens_input"], input.chars().count(), "{usage}");
    assert_eq!(charge["tokens_output"], 0, "{usage}");
    assert_eq!(charge["estimated"], false, "{usage}");
    assert_eq!(charge["amount_paid"], "-0.00019000", "{usage}");
    assert_eq!(app.sim.counters().sessions_opened, 1);

    // mp3 is the default, on the same session.
    let r = app
        .speak(&user.api_key, &json!({"model": SPEAKER, "input": "Again."}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "audio/mpeg");
    assert_eq!(&r.bytes().await.unwrap()[..3], b"ID3");
    assert_eq!(app.sim.counters().sessions_opened, 1);
    // Without a model, the TTS default.
    let r = app
        .speak(&user.api_key, &json!({"input": "Default."}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.wait_for_usage(user.id, 3).await, 3);
}

#[tokio::test]
async fn a_transcript_comes_in_each_format_and_is_billed_by_seconds() {
    let app = audio_app(|_| {}).await;
    let user = app.seed_automated_user().await;
    let r = app
        .transcribe(&user.api_key, form(&[("model", LISTENER)], wav(1500)))
        .await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["text"], "Transcribed audio of 1.50 seconds.", "{body}");
    // The provider's count: 1.5 s, rounded up.
    let usage = usage_route(&app, &user.api_key, 1).await;
    let charge = &usage["items"][0];
    assert_eq!(charge["model_name"], LISTENER, "{usage}");
    assert_eq!(charge["tokens_input"], 2, "{usage}");
    assert_eq!(charge["amount_paid"], "-0.00200000", "{usage}");

    let text = app
        .transcribe(
            &user.api_key,
            form(
                &[("model", LISTENER), ("response_format", "text")],
                wav(500),
            ),
        )
        .await;
    assert_eq!(text.status(), 200);
    assert!(content_type(&text).starts_with("text/plain"));
    assert_eq!(
        text.text().await.unwrap(),
        "Transcribed audio of 0.50 seconds.\n"
    );
    let srt = app
        .transcribe(
            &user.api_key,
            form(&[("model", LISTENER), ("response_format", "srt")], wav(500)),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        srt.starts_with("1\n00:00:00,000 --> 00:00:00,500\n"),
        "{srt}"
    );
    let verbose: Value = app
        .transcribe(
            &user.api_key,
            form(
                &[
                    ("model", LISTENER),
                    ("response_format", "verbose_json"),
                    ("timestamp_granularities[]", "word"),
                ],
                wav(2000),
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verbose["duration"], 2, "{verbose}");
    assert!(
        verbose["words"].as_array().is_some_and(|w| !w.is_empty()),
        "{verbose}"
    );

    // Streamed: the events as the provider sends them; billed on the gateway's own measure.
    let r = app
        .transcribe(
            &user.api_key,
            form(&[("model", LISTENER), ("stream", "true")], wav(3000)),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = crate::market::sse_events(r).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["type"], "transcript.text.done", "{events:?}");
    assert_eq!(last["text"], "Transcribed audio of 3.00 seconds.");
    assert_eq!(app.wait_for_usage(user.id, 5).await, 5);
    let seconds = app.count(&format!(
        "SELECT CAST(SUM(prompt_tokens) AS BIGINT) AS n FROM usage_records WHERE user_id = {}",
        user.id
    ));
    // 2 + 1 (0.5 s, text) + 1 (srt) + 2 + 3.
    assert_eq!(seconds, 9);
    assert_eq!(app.sim.counters().sessions_opened, 1, "one STT session");
}

#[tokio::test]
async fn the_file_may_come_before_the_fields() {
    let app = audio_app(|_| {}).await;
    let user = app.seed_automated_user().await;
    // `curl -F file=@a.wav -F model=… -F response_format=text` sends the file first.
    let form = Form::new()
        .part("file", audio_part(wav(1000), "a.wav"))
        .text("model", LISTENER)
        .text("response_format", "text");
    let r = app.transcribe(&user.api_key, form).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "Transcribed audio of 1.00 seconds.\n"
    );
}

#[tokio::test]
async fn bad_forms_and_bodies_get_the_documented_errors_and_spend_nothing() {
    let app = audio_app(|s| s.max_upload_bytes = 64 * 1024).await;
    let user = app.seed_automated_user().await;
    let key = &user.api_key;

    // Not a form.
    let r = app
        .post_with_key(
            "/api/v1/audio/transcriptions",
            key,
            Some(&json!({"model": LISTENER})),
        )
        .await;
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "Content-Type must be multipart/form-data");

    let invalid = |r: Response, field: &'static str| async move {
        assert_eq!(r.status(), 422, "{field}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], json!(["body", field]), "{body}");
    };
    invalid(
        app.transcribe(key, Form::new().text("model", LISTENER))
            .await,
        "file",
    )
    .await;
    invalid(
        app.transcribe(key, form(&[("response_format", "mp4")], wav(100)))
            .await,
        "response_format",
    )
    .await;
    invalid(
        app.transcribe(key, form(&[("temperature", "2")], wav(100)))
            .await,
        "temperature",
    )
    .await;
    invalid(
        app.transcribe(key, form(&[("stream", "maybe")], wav(100)))
            .await,
        "stream",
    )
    .await;
    invalid(app.transcribe(key, form(&[], Vec::new())).await, "file").await;
    // Over the upload limit (64 KiB here): 413, however it is framed.
    let r = app.transcribe(key, form(&[], wav(3000))).await;
    assert_eq!(r.status(), 413);

    for (body, field) in [
        (json!({"model": SPEAKER, "input": ""}), "input"),
        (
            json!({"model": SPEAKER, "input": "x".repeat(4097)}),
            "input",
        ),
        (json!({"model": SPEAKER, "input": "x", "speed": 5}), "speed"),
        (json!({"model": SPEAKER}), "input"),
    ] {
        let r = app.speak(key, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["detail"][0]["loc"][1], field, "{error}");
    }
    let r = app
        .speak(
            key,
            &json!({"model": SPEAKER, "input": "x", "colour": "red"}),
        )
        .await;
    assert_eq!(r.status(), 422, "unknown fields are refused");

    // A model of another type, before anything is opened.
    let error = openai_error(
        app.speak(key, &json!({"model": LISTENER, "input": "hi"}))
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "model_type_mismatch", "{error}");
    assert_eq!(
        (&error["requested_type"], &error["model_type"]),
        (&json!("TTS"), &json!("STT"))
    );
    let error = openai_error(
        app.transcribe(key, form(&[("model", "llama-3.3-70b")], wav(100)))
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "model_type_mismatch", "{error}");
    assert_eq!(app.sim.counters().sessions_opened, 0, "nothing was opened");
    let charged = app
        .client
        .get(app.url("/api/v1/billing/usage"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(charged["total"], 0, "nothing was charged: {charged}");
}

#[tokio::test]
async fn a_keys_rpm_binds_the_audio_routes_too() {
    let app = audio_app(|_| {}).await;
    let user = app.seed_automated_user().await;
    let r = app
        .authed(
            Method::POST,
            "/api/v1/auth/keys",
            &user.access,
            Some(&json!({"name": "one a minute", "rpm": 1})),
        )
        .await;
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = app
        .speak(&key, &json!({"model": SPEAKER, "input": "once"}))
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "1");
    let error = openai_error(
        app.transcribe(&key, form(&[("model", LISTENER)], wav(100)))
            .await,
        429,
    )
    .await;
    assert_eq!(error["code"], "rate_limit_exceeded", "{error}");
}

#[tokio::test]
async fn a_plain_provider_serves_audio_and_a_503_hands_the_upload_to_the_next() {
    let mock = |name: &str| {
        MockProvider::start(
            MockConfig {
                name: name.to_owned(),
                models: vec!["tts-1".to_owned(), "whisper-1".to_owned()],
                ..MockConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
    };
    let first = mock("first").await.unwrap();
    let second = mock("second").await.unwrap();
    let mut providers = r#"
        [[providers]]
        name = "first"
        base_url = "{A}"
        priority = 1
        models = [
          { name = "voice", upstream = "tts-1", type = "TTS", price = { per_character = 0.001 } },
          { name = "ears", upstream = "whisper-1", type = "STT" },
        ]

        [[providers]]
        name = "second"
        base_url = "{B}"
        priority = 2
        models = [
          { name = "voice", upstream = "tts-1", type = "TTS" },
          { name = "ears", upstream = "whisper-1", type = "STT" },
        ]
        "#
    .replace("{A}", &first.openai_base_url());
    providers = providers.replace("{B}", &second.openai_base_url());
    let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, providers).unwrap();
    let app = audio_app(move |s| s.providers_file = Some(path)).await;
    let user = app.seed_automated_user().await;

    let r = app
        .speak(
            &user.api_key,
            &json!({"model": "voice", "input": "Hi.", "voice": "alloy", "response_format": "flac"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "audio/flac");
    assert_eq!(&r.bytes().await.unwrap()[..4], b"fLaC");
    let seen = first.last_request().unwrap();
    assert_eq!(seen.body["model"], "tts-1", "the provider's own name");
    // Priced by the providers file (the pricing file does not name the model).
    let usage = usage_route(&app, &user.api_key, 1).await;
    assert_eq!(usage["items"][0]["amount_paid"], "-0.00300000", "{usage}");

    // The first provider fails the upload with a 503: the spooled file goes to the second.
    first.set_fault(
        Fault::new(FaultKind::Status {
            status: 503,
            retry_after: None,
        })
        .on(FaultRoute::Transcription),
    );
    let r = app
        .transcribe(
            &user.api_key,
            form(&[("model", "ears"), ("language", "en")], wav(1500)),
        )
        .await;
    assert_eq!(r.status(), 200, "no error reaches the client");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["text"], "Transcribed audio of 1.50 seconds.", "{body}");
    let upload = second.last_request().unwrap().upload.unwrap();
    assert_eq!(upload.bytes, 48_044, "the whole file");
    let name = upload.file_name.clone().unwrap();
    assert!(
        name.starts_with("upload-") && name.ends_with(".wav"),
        "a name of its own, the extension kept: {name}"
    );
    assert_eq!(upload.field("model"), Some("whisper-1"));
    assert_eq!(upload.field("language"), Some("en"));
    assert_eq!(upload.field("response_format"), Some("json"));
    assert_eq!(app.wait_for_usage(user.id, 2).await, 2);
    let second_served = app.count(&format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {} AND upstream = 'second'",
        user.id
    ));
    assert_eq!(second_served, 1);
    assert_eq!(app.sim.counters().sessions_opened, 0);
}

/// A 25 MiB upload goes to a spool file as it arrives: the gateway's resident memory (a
/// separate process, sampled every 10 ms through the upload and the answer) barely moves.
#[tokio::test]
async fn a_25_mib_upload_barely_moves_the_gateways_memory() {
    let app = audio_app(|_| {}).await;
    let user = app.seed_automated_user().await;
    let gateway = crate::process::GatewayProcess::beside(&app, &[]).await;
    let send = |audio: Vec<u8>| {
        app.client
            .post(gateway.url("/api/v1/audio/transcriptions"))
            .bearer_auth(&user.api_key)
            .multipart(form(&[("model", LISTENER)], audio))
            .send()
    };
    // Warm: the session is open, the pools and buffers of a first request are there.
    assert_eq!(send(wav(1000)).await.unwrap().status(), 200);
    let before = gateway.rss_kib().expect("the gateway's RSS");

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = gateway.child.id();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = crate::process::rss_kib_of(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    // 25 MiB in all: 819.2 s of 16 kHz 16-bit audio.
    let audio = wav((25 * 1024 * 1024 - 44) / 32);
    let r = send(audio).await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"], "Transcribed audio of 819.20 seconds.");
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!("a 25 MiB upload: RSS {before} KiB before, peak +{grew} KiB");
    assert!(
        grew < 6 * 1024,
        "RSS grew by {grew} KiB for a 25 MiB upload"
    );
}
