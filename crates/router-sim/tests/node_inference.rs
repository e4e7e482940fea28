//! The node's non-chat inference routes: embeddings, speech and transcriptions — their shapes,
//! the session texts, the queue they share with chat, and the node's quirks (base64 embeddings,
//! transcription formats, the upload path's dropped connection).

mod common;

use std::time::{Duration, Instant};

use common::{Sim, start, start_with, user_message};
use morpheus_router_sim::{DeadReason, FaultKind, FaultRoute, ProviderLatency, SimConfig};
use serde_json::{Value, json};

const UNKNOWN_SESSION: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

fn model_id(sim_models: &[morpheus_router_sim::SimModel], name: &str) -> String {
    sim_models
        .iter()
        .find(|m| m.name == name)
        .unwrap()
        .id
        .clone()
}

async fn open(sim: &Sim, name: &str) -> String {
    let id = model_id(&morpheus_router_sim::default_models(), name);
    sim.open_session(&id, 600).await
}

fn embed(sim: &Sim, session: &str, body: &Value) -> reqwest::RequestBuilder {
    sim.post("/v1/embeddings")
        .header("session_id", session)
        .json(body)
}

fn speak(sim: &Sim, session: &str, body: &Value) -> reqwest::RequestBuilder {
    sim.post("/v1/audio/speech")
        .header("session_id", session)
        .json(body)
}

const BOUNDARY: &str = "sim-boundary-7d3f";

/// A multipart body: text fields, then an optional `file` part.
fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, data)) = file {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn transcribe(sim: &Sim, session: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    sim.post("/v1/audio/transcriptions")
        .header("session_id", session)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
}

/// A WAV file of silence: mono 16-bit at `rate` Hz, `secs` long.
fn wav(rate: u32, secs: f64) -> Vec<u8> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let data_len = (f64::from(rate) * 2.0 * secs) as u32;
    let mut h = b"RIFF".to_vec();
    h.extend_from_slice(&(data_len + 36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&[1, 0, 1, 0]);
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * 2).to_le_bytes());
    h.extend_from_slice(&[2, 0, 16, 0]);
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h.resize(h.len() + data_len as usize, 0);
    h
}

async fn status_type_text(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

// ------------------------------------------------------------------------------------------
// Embeddings

#[tokio::test]
async fn embeddings_answer_go_openai_shapes() {
    let sim = start().await;
    let sid = open(&sim, "text-embedding-bge-m3").await;
    let resp = embed(
        &sim,
        &sid,
        &json!({"input": ["the quick brown fox", "hi"], "model": "x"}),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, raw) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{raw}");
    // Top-level keys sorted (re-marshalled through a map), entries and usage in struct order.
    assert!(
        raw.starts_with(r#"{"data":[{"object":"embedding","embedding":["#),
        "{raw}"
    );
    assert!(
        raw.ends_with(
            r#""model":"text-embedding-bge-m3","object":"list","usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5,"prompt_tokens_details":null,"completion_tokens_details":null}}"#
        ),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&raw).unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        (data[0]["index"].clone(), data[1]["index"].clone()),
        (json!(0), json!(1))
    );
    let v: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v.len(), 16);
    let norm: f64 = v.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");

    // Deterministic, `dimensions` honoured, token arrays accepted.
    let again: Value = embed(
        &sim,
        &sid,
        &json!({"input": "the quick brown fox", "dimensions": 64}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let again16: Value = embed(&sim, &sid, &json!({"input": "the quick brown fox"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again16["data"][0]["embedding"], data[0]["embedding"]);
    assert_eq!(again["data"][0]["embedding"].as_array().unwrap().len(), 64);
    let tokens: Value = embed(&sim, &sid, &json!({"input": [[1, 2, 3], [4]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn embeddings_errors_are_the_nodes() {
    let sim = start().await;
    let sid = open(&sim, "text-embedding-bge-m3").await;
    // Binding errors: 400 with Go's texts.
    let resp = embed(&sim, &sid, &json!({"input": "x", "dimensions": "8"}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"error": "json: cannot unmarshal string into Go struct field base.dimensions of type int"})
    );
    let resp = sim
        .post("/v1/embeddings")
        .header("session_id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(status_type_text(resp).await.2, r#"{"error":"EOF"}"#);

    // base64: the provider cannot decode the backend's strings into []float32.
    let resp = embed(
        &sim,
        &sid,
        &json!({"input": "x", "encoding_format": "base64"}),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (500, "application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"],
        "provider request failed: provider error: failed to prompt: failed to decode response: \
         json: cannot unmarshal string into Go struct field Embedding.data.embedding of type []float32"
    );

    // The backend's refusals are provider errors.
    let resp = embed(&sim, &sid, &json!({"input": "x", "dimensions": 5000}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["providerModelError"]["error"]["param"], "dimensions");
    let resp = embed(&sim, &sid, &json!({"input": []}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["providerModelError"]["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn session_texts_match_chat() {
    let sim = start().await;
    for path in ["/v1/embeddings", "/v1/audio/speech"] {
        let body = json!({"input": "hello", "voice": "alloy"});
        // No session: the node looks for a local model with the zero id.
        let resp = sim.post(path).json(&body).send().await.unwrap();
        let (status, _, text) = status_type_text(resp).await;
        assert_eq!(status, 500, "{path}");
        assert!(text.contains("model not found: 0x0000"), "{path}: {text}");
        let resp = sim
            .post(path)
            .header("session_id", UNKNOWN_SESSION)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, text) = status_type_text(resp).await;
        assert_eq!(
            (status, text.as_str()),
            (500, r#"{"error":"session not found"}"#),
            "{path}"
        );
        let resp = sim
            .post(path)
            .header("session_id", "0x12")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    let resp = transcribe(
        &sim,
        UNKNOWN_SESSION,
        form(&[], Some(("a.wav", &wav(8000, 0.5)))),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        status_type_text(resp).await.2,
        r#"{"error":"session not found"}"#
    );

    // Expired: refused by the provider, as chat is.
    let emb = open(&sim, "text-embedding-bge-m3").await;
    let tts = open(&sim, "tts-kokoro").await;
    let stt = open(&sim, "whisper-1").await;
    sim.handle.advance_clock(Duration::from_secs(3600));
    let expired = r#"{"error":"provider request failed: provider error: session expired"}"#;
    let resp = embed(&sim, &emb, &json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_type_text(resp).await,
        (500, "application/json".to_owned(), expired.to_owned())
    );
    let resp = speak(&sim, &tts, &json!({"input": "x", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!((status, text.as_str()), (500, expired));
    // A presigned URL is one message: the provider's text comes back.
    let resp = transcribe(
        &sim,
        &stt,
        form(&[("s3_presigned_url", "https://s3.example/a.wav")], None),
    )
    .send()
    .await
    .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 500);
    assert_eq!(
        text,
        r#"{"error":"failed to send audio transcription request: provider error: session expired"}"#
    );
    // An upload's relay dereferences the error answer's missing result: the node panics and the
    // connection closes without an answer.
    let err = transcribe(&sim, &stt, form(&[], Some(("a.wav", &wav(8000, 0.5)))))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
}

#[tokio::test]
async fn one_request_per_session_shared_with_chat() {
    let sim = start_with(SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(150),
            per_token: Duration::ZERO,
        },
        ..SimConfig::default()
    })
    .await;
    let sid = open(&sim, "text-embedding-bge-m3").await;
    let t0 = Instant::now();
    let chat = sim.chat(&sid, &user_message("first"));
    let e = embed(&sim, &sid, &json!({"input": "second"}));
    let s = speak(&sim, &sid, &json!({"input": "third", "voice": "alloy"}));
    let a = tokio::spawn(async move {
        chat.send().await.unwrap().bytes().await.unwrap();
        t0.elapsed()
    });
    let b = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let resp = e.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        t0.elapsed()
    });
    let c = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let resp = s.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        t0.elapsed()
    });
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
    assert!(a >= Duration::from_millis(150), "{a:?}");
    assert!(b >= a + Duration::from_millis(140), "{a:?} {b:?}");
    assert!(c >= b + Duration::from_millis(140), "{b:?} {c:?}");
    let counters = sim.handle.counters();
    assert_eq!(
        (counters.session_waits, counters.max_session_concurrency),
        (2, 3)
    );
}

// ------------------------------------------------------------------------------------------
// Speech

#[tokio::test]
async fn speech_streams_audio_with_the_formats_content_type() {
    let sim = start().await;
    let sid = open(&sim, "tts-kokoro").await;
    // Default format: mp3.
    let resp = speak(
        &sim,
        &sid,
        &json!({"input": "hello world", "voice": "alloy"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    let mp3 = resp.bytes().await.unwrap();
    assert!(mp3.starts_with(b"ID3"));
    // 11 characters × 60 ms × 16 bytes/ms.
    assert_eq!(mp3.len(), 11 * 60 * 16);

    for (format, ct, magic) in [
        ("opus", "audio/opus", &b"OggS"[..]),
        ("aac", "audio/aac", &b"\xFF\xF1"[..]),
        ("flac", "audio/flac", &b"fLaC"[..]),
        ("wav", "audio/wav", &b"RIFF"[..]),
        ("pcm", "audio/pcm", &b"\0\0"[..]),
    ] {
        let resp = speak(
            &sim,
            &sid,
            &json!({"input": "hello world", "voice": "alloy", "response_format": format}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(resp.headers()["content-type"], ct, "{format}");
        let audio = resp.bytes().await.unwrap();
        assert!(audio.starts_with(magic), "{format}");
    }

    // WAV: a valid header, longer with longer input, shorter when faster.
    let wav_of = |input: &str, speed: f64| {
        speak(
            &sim,
            &sid,
            &json!({"input": input, "voice": "alloy", "response_format": "wav", "speed": speed}),
        )
    };
    let short = wav_of("hi there", 1.0)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let long = wav_of("hi there, this is longer", 1.0)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let fast = wav_of("hi there, this is longer", 2.0)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(long.len() > short.len() && fast.len() < long.len());
    assert_eq!(&long[8..16], b"WAVEfmt ");
    let data_len = u32::from_le_bytes(long[40..44].try_into().unwrap()) as usize;
    assert_eq!(data_len + 44, long.len());

    // The backend's refusals are provider errors; bad JSON is the node's 400.
    let resp = speak(
        &sim,
        &sid,
        &json!({"input": "x", "voice": "alloy", "response_format": "ogg"}),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    assert!(
        text.starts_with(r#"{"providerModelError":{"error":"#),
        "{text}"
    );
    let resp = speak(&sim, &sid, &json!({"input": 5, "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 400);
    assert_eq!(
        text,
        r#"{"error":"json: cannot unmarshal number into Go struct field base.input of type string"}"#
    );
}

#[tokio::test]
async fn speech_is_relayed_in_pieces() {
    let sim = start_with(SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::ZERO,
            per_token: Duration::from_millis(20),
        },
        ..SimConfig::default()
    })
    .await;
    let sid = open(&sim, "tts-kokoro").await;
    // 100 chars × 60 ms × 48 bytes/ms + 44 = 288,044 bytes: 36 pieces of 8 KiB, 20 ms apart.
    let input = "a".repeat(100);
    let t0 = Instant::now();
    let mut resp = speak(
        &sim,
        &sid,
        &json!({"input": input, "voice": "alloy", "response_format": "wav"}),
    )
    .send()
    .await
    .unwrap();
    let head = t0.elapsed();
    let mut total = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 288_044);
    assert!(head < Duration::from_millis(300), "{head:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// Transcriptions

#[tokio::test]
async fn transcription_formats() {
    let sim = start().await;
    let sid = open(&sim, "whisper-1").await;
    let audio = wav(16_000, 1.5);

    // Only `response_format` (OpenAI's field): the node's provider parses by its own `format`
    // field, so the backend's JSON comes back as text/plain.
    let resp = transcribe(
        &sim,
        &sid,
        form(&[("model", "whisper-1")], Some(("speech.wav", &audio))),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (200, "text/plain"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["text"], "Transcribed audio of 1.50 seconds.");
    assert_eq!(body["usage"], json!({"seconds": 2, "type": "duration"}));

    // `format=json`: go-openai's AudioResponse, every field, keys sorted.
    let resp = transcribe(
        &sim,
        &sid,
        form(&[("format", "json")], Some(("speech.wav", &audio))),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(
        text,
        r#"{"duration":0,"language":"","segments":null,"task":"","text":"Transcribed audio of 1.50 seconds.","usage":{"type":"duration","seconds":2},"words":null}"#
    );

    // verbose_json needs both fields; the duration comes from the WAV header.
    let resp = transcribe(
        &sim,
        &sid,
        form(
            &[
                ("format", "verbose_json"),
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "word"),
                ("language", "en"),
            ],
            Some(("speech.wav", &audio)),
        ),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["duration"], 1.5);
    assert_eq!(body["task"], "transcribe");
    assert_eq!(body["language"], "en");
    assert_eq!(body["segments"][0]["end"], 1.5);
    assert_eq!(body["segments"][0]["transient"], false);
    assert_eq!(body["words"].as_array().unwrap().len(), 5);
    assert!(
        text.contains(r#""segments":[{"id":0,"seek":0,"start":0,"end":1.5,"#),
        "{text}"
    );

    // text, srt, vtt: the backend's text verbatim.
    for (format, expected) in [
        ("text", "Transcribed audio of 1.50 seconds.\n"),
        (
            "srt",
            "1\n00:00:00,000 --> 00:00:01,500\nTranscribed audio of 1.50 seconds.\n\n",
        ),
        (
            "vtt",
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nTranscribed audio of 1.50 seconds.\n\n",
        ),
    ] {
        let resp = transcribe(
            &sim,
            &sid,
            form(&[("response_format", format)], Some(("a.wav", &audio))),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(
            status_type_text(resp).await,
            (200, "text/plain".to_owned(), expected.to_owned())
        );
    }
    // `format=json` with a text answer: the provider fails to parse it.
    let resp = transcribe(
        &sim,
        &sid,
        form(
            &[("format", "json"), ("response_format", "text")],
            Some(("a.wav", &audio)),
        ),
    )
    .send()
    .await
    .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 500);
    assert!(
        text.contains("failed to end streaming session: failed to process stream end request: provider error: failed to prompt: failed to parse transcription response: invalid character 'T' looking for beginning of value"),
        "{text}"
    );

    // Not a WAV file: bytes counted.
    let resp = transcribe(
        &sim,
        &sid,
        form(
            &[("response_format", "text")],
            Some(("a.mp3", &[7u8; 3000])),
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        status_type_text(resp).await.2,
        "Transcribed 3000 bytes of audio.\n"
    );
}

#[tokio::test]
async fn transcription_streams_deltas() {
    let sim = start().await;
    let sid = open(&sim, "whisper-1").await;
    let resp = transcribe(
        &sim,
        &sid,
        form(&[("stream", "true")], Some(("a.wav", &wav(8000, 2.0)))),
    )
    .send()
    .await
    .unwrap();
    let (status, ct, text) = status_type_text(resp).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    let events = common::sse_data(&text);
    assert_eq!(events.len(), 6);
    assert_eq!(
        events[0],
        r#"{"type":"transcript.text.delta","text":"","delta":"Transcribed "}"#
    );
    assert_eq!(
        events[5],
        r#"{"type":"transcript.text.done","text":"Transcribed audio of 2.00 seconds.","delta":""}"#
    );
    let joined: String = events[..5]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["delta"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(joined, "Transcribed audio of 2.00 seconds.");
}

#[tokio::test]
async fn bad_multipart_is_refused() {
    let sim = start().await;
    let sid = open(&sim, "whisper-1").await;
    let send = |ct: Option<&str>, body: Vec<u8>| {
        let mut req = sim
            .post("/v1/audio/transcriptions")
            .header("session_id", &sid)
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct.to_owned());
        }
        req.send()
    };
    let cases = [
        (
            None,
            b"x".to_vec(),
            400,
            "request Content-Type isn't multipart/form-data",
        ),
        (
            Some("application/json"),
            b"{}".to_vec(),
            400,
            "request Content-Type isn't multipart/form-data",
        ),
        (
            Some("multipart/form-data"),
            b"x".to_vec(),
            400,
            "no multipart boundary param in Content-Type",
        ),
        (
            Some("multipart/form-data; boundary=sim-boundary-7d3f"),
            b"garbage".to_vec(),
            400,
            "multipart: NextPart: EOF",
        ),
    ];
    for (ct, body, status, text) in cases {
        let resp = send(ct, body).await.unwrap();
        let got = status_type_text(resp).await;
        assert_eq!(
            (got.0, got.2),
            (status, json!({"error": text}).to_string()),
            "{ct:?}"
        );
    }
    // Form values gin binds into numbers.
    let resp = transcribe(
        &sim,
        &sid,
        form(&[("temperature", "warm")], Some(("a.wav", b"x"))),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        status_type_text(resp).await.2,
        r#"{"error":"strconv.ParseFloat: parsing \"warm\": invalid syntax"}"#
    );
    // No file: the handler meant 400 but answers 500.
    let resp = transcribe(&sim, &sid, form(&[("language", "en")], None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_type_text(resp).await,
        (
            500,
            "application/json; charset=utf-8".to_owned(),
            r#"{"error":"Failed to get file: http: no such file"}"#.to_owned()
        )
    );
}

// ------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn chat_faults_apply_to_the_new_routes() {
    let sim = start().await;
    let emb = open(&sim, "text-embedding-bge-m3").await;
    let tts = open(&sim, "tts-kokoro").await;
    let stt = open(&sim, "whisper-1").await;

    // Backend errors: the 400 providerModelError chat gets.
    sim.fault(
        FaultRoute::Embeddings,
        FaultKind::backend_rate_limited(Some(2)),
        Some(1),
    );
    let resp = embed(&sim, &emb, &json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["providerModelError"]["error"]["code"],
        "rate_limit_exceeded"
    );
    sim.fault(
        FaultRoute::AudioTranscription,
        FaultKind::backend_server_error(),
        Some(1),
    );
    let resp = transcribe(&sim, &stt, form(&[], Some(("a.wav", b"x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A provider that is down.
    let provider = |model: &str| {
        let models = morpheus_router_sim::default_models();
        let m = models.iter().find(|m| m.name == model).unwrap();
        m.bids
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .unwrap()
            .provider
            .clone()
    };
    sim.handle.set_provider_down(&provider("tts-kokoro"), true);
    let resp = speak(&sim, &tts, &json!({"input": "x", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 500);
    assert!(
        text.contains("provider request failed: failed to connect to provider"),
        "{text}"
    );
    sim.handle.set_provider_down(&provider("whisper-1"), true);
    let resp = transcribe(&sim, &stt, form(&[], Some(("a.wav", b"x"))))
        .send()
        .await
        .unwrap();
    let (status, _, text) = status_type_text(resp).await;
    assert_eq!(status, 500);
    assert!(
        text.contains("failed to start streaming session: failed to send stream start request: failed to connect to provider"),
        "{text}"
    );

    // A dead session: chat's texts, for good.
    sim.fault(
        FaultRoute::Embeddings,
        FaultKind::DeadSession {
            reason: DeadReason::UserNotFound,
        },
        Some(1),
    );
    for _ in 0..2 {
        let resp = embed(&sim, &emb, &json!({"input": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_type_text(resp).await.2,
            r#"{"error":"provider request failed: provider error: user not found"}"#
        );
    }
    // Chat faults stay on chat.
    sim.fault(FaultRoute::Chat, FaultKind::Reset, None);
    let emb2 = open(&sim, "text-embedding-bge-m3").await;
    let resp = embed(&sim, &emb2, &json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
