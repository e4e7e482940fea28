//! The audio routes: speech as chunked binary audio, transcriptions of streamed uploads.

mod common;

use common::{Mock, read_all, sse_data, start, start_with};
use morpheus_openai_mock::{Fault, FaultKind, FaultRoute, MockConfig, UploadSeen};
use serde_json::{Value, json};

const BOUNDARY: &str = "mock-boundary-4f2a";

/// A multipart body: text fields, then an optional `file` part (file name, content type,
/// content).
fn form(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, content_type, content)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A WAV file of `secs` seconds of silence, 16 kHz mono 16-bit.
fn wav(secs: f64) -> Vec<u8> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let data_len = (secs * 32_000.0) as u32;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(data_len + 36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&16_000u32.to_le_bytes());
    h.extend_from_slice(&32_000u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h.resize(h.len() + data_len as usize, 0);
    h
}

impl Mock {
    async fn transcribe(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url("/v1/audio/transcriptions"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn transcribe_json(&self, body: Vec<u8>) -> (u16, Value) {
        let resp = self.transcribe(body).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn speech(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/audio/speech", body).send().await.unwrap()
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[tokio::test]
async fn speech_wav_is_a_valid_file_of_the_right_length() {
    let mock = start().await;
    let resp = mock
        .speech(
            &json!({"model": "tts-1", "input": "hello world", "voice": "alloy",
                        "response_format": "wav"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    assert!(
        resp.headers().get("content-length").is_none(),
        "sent chunked"
    );
    let audio = resp.bytes().await.unwrap();
    // 11 characters: 660 ms of 24 kHz 16-bit mono, 48 bytes per ms.
    let data_len = 660 * 48;
    assert_eq!(audio.len(), 44 + data_len);
    assert_eq!(&audio[..4], b"RIFF");
    assert_eq!(le_u32(&audio, 4) as usize, 36 + data_len);
    assert_eq!(&audio[8..16], b"WAVEfmt ");
    assert_eq!(le_u32(&audio, 16), 16);
    assert_eq!(&audio[20..24], &[1, 0, 1, 0], "PCM, mono");
    assert_eq!(le_u32(&audio, 24), 24_000);
    assert_eq!(le_u32(&audio, 28), 48_000);
    assert_eq!(&audio[32..36], &[2, 0, 16, 0], "block align 2, 16 bits");
    assert_eq!(&audio[36..40], b"data");
    assert_eq!(le_u32(&audio, 40) as usize, data_len);
    assert!(audio[44..].iter().all(|b| *b == 0));

    // `speed` shortens it, `pcm` is the samples alone.
    let pcm = mock
        .speech(
            &json!({"model": "tts-1", "input": "hello world", "voice": "alloy",
                        "response_format": "pcm", "speed": 2.0}),
        )
        .await;
    assert_eq!(pcm.headers()["content-type"], "audio/pcm");
    assert_eq!(pcm.bytes().await.unwrap().len(), 330 * 48);

    let last = mock.handle.last_request().unwrap();
    assert_eq!(last.path, "/v1/audio/speech");
    assert_eq!(last.body["speed"], 2.0);
    assert_eq!(last.upload, None);
    let c = mock.handle.counters();
    assert_eq!(
        (c.speech, c.streams_started, c.streams_completed),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn speech_defaults_to_mp3_and_labels_every_format() {
    let mock = start().await;
    let resp = mock
        .speech(&json!({"model": "tts-1", "input": "abcdefghij", "voice": "nova"}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    let audio = resp.bytes().await.unwrap();
    assert_eq!(&audio[..3], b"ID3");
    assert_eq!(audio.len(), 600 * 16);

    for (format, content_type, magic) in [
        ("opus", "audio/opus", &b"OggS"[..]),
        ("aac", "audio/aac", &b"\xFF\xF1"[..]),
        ("flac", "audio/flac", &b"fLaC"[..]),
    ] {
        let resp = mock
            .speech(&json!({"model": "tts-1", "input": "a", "voice": "nova",
                            "response_format": format}))
            .await;
        assert_eq!(resp.headers()["content-type"], content_type);
        let audio = resp.bytes().await.unwrap();
        // One character is below the 200 ms floor.
        assert_eq!(audio.len(), 200 * 16, "{format}");
        assert!(audio.starts_with(magic), "{format}");
    }
}

#[tokio::test]
async fn speech_refuses_bad_requests_in_openai_shape() {
    let mock = start_with(MockConfig {
        api_key: Some("sk-audio".to_owned()),
        ..MockConfig::default()
    })
    .await;
    let long = "x".repeat(4097);
    for (body, status, param) in [
        (json!({"model": "tts-1", "voice": "alloy"}), 400, "input"),
        (
            json!({"model": "tts-1", "input": "", "voice": "alloy"}),
            400,
            "input",
        ),
        (
            json!({"model": "tts-1", "input": long, "voice": "alloy"}),
            400,
            "input",
        ),
        (json!({"model": "tts-1", "input": "hi"}), 400, "voice"),
        (
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "ogg"}),
            400,
            "response_format",
        ),
        (
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "speed": 5}),
            400,
            "speed",
        ),
        (json!({"input": "hi", "voice": "alloy"}), 400, "model"),
        (
            json!({"model": "tts-9", "input": "hi", "voice": "alloy"}),
            404,
            "model",
        ),
    ] {
        let resp = mock
            .post("/v1/audio/speech", &body)
            .bearer_auth("sk-audio")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], param, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let (status, err) = mock
        .post_json(
            "/v1/audio/speech",
            &json!({"model": "tts-1", "input": "hi", "voice": "alloy"}),
        )
        .await;
    assert_eq!(status, 401, "{err}");
    let c = mock.handle.counters();
    assert_eq!((c.speech, c.unauthorized), (9, 1));
}

#[tokio::test]
async fn speech_meets_head_and_stream_faults() {
    let mock = start().await;
    let request = json!({"model": "tts-1", "input": "x".repeat(100), "voice": "alloy",
                         "response_format": "pcm"});
    // 6 s of pcm: 288,000 bytes, 36 pieces of 8 KiB.
    mock.handle.set_fault(
        Fault::new(FaultKind::Status {
            status: 503,
            retry_after: None,
        })
        .on(FaultRoute::Speech),
    );
    assert_eq!(
        mock.post_json("/v1/chat/completions", &common::chat_request("hi"))
            .await
            .0,
        200,
        "a speech fault leaves chat alone"
    );
    assert_eq!(mock.speech(&request).await.status(), 503);

    mock.handle
        .set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 3 }).on(FaultRoute::Speech));
    let resp = mock.speech(&request).await;
    assert_eq!(resp.status(), 200);
    let mut got = 0;
    let mut resp = resp;
    let err = loop {
        match resp.chunk().await {
            Ok(Some(b)) => got += b.len(),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    assert!(err.is_some(), "the body must fail");
    assert_eq!(got, 3 * 8192);
    common::wait_for(&mock, |c| c.streams_cut == 1).await;
    assert_eq!(
        mock.speech(&request).await.bytes().await.unwrap().len(),
        288_000
    );
}

#[tokio::test]
async fn transcribes_a_wav_upload_in_every_format() {
    let mock = start().await;
    let audio = wav(1.5);
    let upload = |extra: &[(&str, &str)]| {
        let mut fields = vec![("model", "whisper-1")];
        fields.extend_from_slice(extra);
        form(&fields, Some(("speech.wav", "audio/wav", &audio)))
    };
    let text = "Transcribed audio of 1.50 seconds.";

    let resp = mock.transcribe(upload(&[])).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"text": text, "usage": {"type": "duration", "seconds": 2}})
    );

    let resp = mock
        .transcribe(upload(&[("response_format", "text")]))
        .await;
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.text().await.unwrap(), format!("{text}\n"));
    let srt = mock.transcribe(upload(&[("response_format", "srt")])).await;
    assert_eq!(
        srt.text().await.unwrap(),
        format!("1\n00:00:00,000 --> 00:00:01,500\n{text}\n\n")
    );
    let vtt = mock.transcribe(upload(&[("response_format", "vtt")])).await;
    assert_eq!(
        vtt.text().await.unwrap(),
        format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n\n")
    );

    let (status, body) = mock
        .transcribe_json(upload(&[
            ("response_format", "verbose_json"),
            ("language", "de"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"], "transcribe");
    assert_eq!(body["language"], "de");
    assert_eq!(body["duration"], 1.5);
    assert_eq!(body["text"], text);
    assert_eq!(body["usage"], json!({"type": "duration", "seconds": 2}));
    let segments = body["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(
        (
            &segments[0]["start"],
            &segments[0]["end"],
            &segments[0]["text"]
        ),
        (&json!(0.0), &json!(1.5), &json!(text))
    );
    let words = body["words"].as_array().unwrap();
    assert_eq!(words.len(), 5);
    assert_eq!(words[0]["word"], "Transcribed");
    assert_eq!(words[4]["word"], "seconds");
    assert_eq!(words[4]["end"], 1.5);
    // Without the word granularity: no words, English by default.
    let (_, body) = mock
        .transcribe_json(upload(&[("response_format", "verbose_json")]))
        .await;
    assert!(body.get("words").is_none(), "{body}");
    assert_eq!(body["language"], "english");

    let last = mock.handle.last_request().unwrap();
    assert_eq!(last.path, "/v1/audio/transcriptions");
    assert_eq!(
        last.body,
        json!({"model": "whisper-1", "response_format": "verbose_json"})
    );
    assert_eq!(
        last.upload,
        Some(UploadSeen {
            file_name: Some("speech.wav".to_owned()),
            content_type: Some("audio/wav".to_owned()),
            bytes: audio.len() as u64,
            fields: vec![
                ("model".to_owned(), "whisper-1".to_owned()),
                ("response_format".to_owned(), "verbose_json".to_owned())
            ],
        })
    );
    assert_eq!(mock.handle.counters().transcriptions, 6);
}

#[tokio::test]
async fn streams_a_transcript_word_by_word() {
    let mock = start().await;
    let audio = wav(0.25);
    let resp = mock
        .transcribe(form(
            &[("model", "whisper-1"), ("stream", "true")],
            Some(("a.wav", "audio/wav", &audio)),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (body, err) = read_all(resp).await;
    assert!(err.is_none());
    let events: Vec<Value> = sse_data(&body)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let deltas: Vec<&str> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "transcript.text.delta");
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        deltas,
        ["Transcribed ", "audio ", "of ", "0.25 ", "seconds."]
    );
    assert_eq!(
        events.last().unwrap(),
        &json!({"type": "transcript.text.done", "text": deltas.concat(),
                "usage": {"type": "duration", "seconds": 1}})
    );
    assert!(!body.contains("[DONE]"));
    common::wait_for(&mock, |c| c.streams_completed == 1).await;

    // A stream fault on the route cuts it after two words.
    mock.handle.set_fault(
        Fault::new(FaultKind::CutAfterChunks { chunks: 2 }).on(FaultRoute::Transcription),
    );
    let resp = mock
        .transcribe(form(
            &[("model", "whisper-1"), ("stream", "true")],
            Some(("a.wav", "audio/wav", &audio)),
        ))
        .await;
    let (body, err) = read_all(resp).await;
    assert!(err.is_some());
    assert_eq!(sse_data(&body).len(), 2);
}

#[tokio::test]
async fn a_non_wav_upload_is_measured_by_its_size() {
    let mock = start().await;
    let clip = vec![7u8; 40_000];
    let (status, body) = mock
        .transcribe_json(form(
            &[("model", "whisper-1")],
            Some(("clip.mp3", "audio/mpeg", &clip)),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"text": "Transcribed 40000 bytes of audio.",
               "usage": {"type": "duration", "seconds": 3}})
    );
    let (_, body) = mock
        .transcribe_json(form(
            &[("model", "whisper-1"), ("response_format", "verbose_json")],
            Some(("clip.mp3", "audio/mpeg", &clip)),
        ))
        .await;
    assert_eq!(body["duration"], 2.5);
}

#[tokio::test]
async fn refuses_bad_forms_in_openai_shape() {
    let mock = start().await;
    let audio = wav(0.1);
    let file = Some(("a.wav", "audio/wav", &audio[..]));
    for (body, status, param) in [
        (form(&[("model", "whisper-1")], None), 400, json!("file")),
        // A `file` text field is not a file.
        (
            form(&[("model", "whisper-1"), ("file", "a.wav")], None),
            400,
            json!("file"),
        ),
        (form(&[], file), 400, json!("model")),
        (form(&[("model", "whisper-9")], file), 404, json!("model")),
        (
            form(&[("model", "whisper-1"), ("response_format", "mp3")], file),
            400,
            json!("response_format"),
        ),
        (
            form(&[("model", "whisper-1"), ("temperature", "hot")], file),
            400,
            json!("temperature"),
        ),
        (
            form(&[("model", "whisper-1"), ("stream", "maybe")], file),
            400,
            json!("stream"),
        ),
        (b"not a form".to_vec(), 400, Value::Null),
    ] {
        let (got, err) = mock.transcribe_json(body).await;
        assert_eq!(got, status, "{err}");
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    // Not multipart at all.
    let (status, err) = mock
        .post_json("/v1/audio/transcriptions", &json!({"model": "whisper-1"}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data")
    );
    let last = mock.handle.last_request().unwrap();
    assert_eq!(last.upload, Some(UploadSeen::default()));
    assert_eq!(mock.handle.counters().transcriptions, 9);
}

#[tokio::test]
async fn a_5_mib_upload_is_streamed_and_counted() {
    let mock = start().await;
    let big = vec![0x55u8; 5 * 1024 * 1024];
    let (status, body) = mock
        .transcribe_json(form(
            &[("model", "whisper-1"), ("prompt", "a long one")],
            Some(("big.ogg", "audio/ogg", &big)),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"], "Transcribed 5242880 bytes of audio.");
    assert_eq!(body["usage"]["seconds"], 328);
    let c = mock.handle.counters();
    assert_eq!((c.transcriptions, c.upload_bytes), (1, 5 * 1024 * 1024));
    let upload = mock.handle.last_request().unwrap().upload.unwrap();
    assert_eq!(upload.bytes, 5 * 1024 * 1024);
    assert_eq!(upload.file_name.as_deref(), Some("big.ogg"));
    assert_eq!(upload.content_type.as_deref(), Some("audio/ogg"));
    assert_eq!(upload.field("prompt"), Some("a long one"));
}

#[tokio::test]
async fn transcription_faults_and_auth_leave_the_connection_usable() {
    let mock = start_with(MockConfig {
        api_key: Some("sk-audio".to_owned()),
        ..MockConfig::default()
    })
    .await;
    let audio = wav(0.5);
    let body = || {
        form(
            &[("model", "whisper-1")],
            Some(("a.wav", "audio/wav", &audio)),
        )
    };
    let send = |key: &'static str| {
        mock.http
            .post(mock.url("/v1/audio/transcriptions"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .bearer_auth(key)
            .body(body())
            .send()
    };
    assert_eq!(send("sk-wrong").await.unwrap().status(), 401);
    mock.handle.set_fault(
        Fault::new(FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        })
        .on(FaultRoute::Transcription),
    );
    let resp = send("sk-audio").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    mock.handle
        .set_fault(Fault::new(FaultKind::Refuse).on(FaultRoute::Transcription));
    assert!(send("sk-audio").await.is_err());
    let resp = send("sk-audio").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["text"], "Transcribed audio of 0.50 seconds.");
    let c = mock.handle.counters();
    assert_eq!(
        (c.transcriptions, c.unauthorized, c.faults_fired),
        (4, 1, 2)
    );
}
