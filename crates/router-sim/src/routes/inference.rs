//! The node's non-chat inference routes: `POST /v1/embeddings`, `POST /v1/audio/speech` and
//! `POST /v1/audio/transcriptions`, addressed to a session by the `session_id` header.
//!
//! Each follows the chat route's order (`proxyapi/controller_http.go:1727-1779,1590-1628,
//! 1410-1462`): headers and body are bound (400 `{"error":…}`), the adapter is looked up (500,
//! `session not found` for an unknown session when chats are stored, `aiengine/ai_engine.go:54-85`),
//! then the sender validates the session and waits for it in **the same per-session queue as
//! chat** (`proxyapi/proxy_sender.go:1186-1202,1472-1488,1547-1563`: one request per session at a
//! time, first come first served, never giving up), and only then does the provider see it.
//! Provider and backend errors surface as chat's do: a backend's error body as 400
//! `{"providerModelError":…}` (`controller_http.go:1531-1534,1663-1666,1785-1788`), anything else
//! as 500 `{"error":…}`. As for chat, the queue and the model's time run on a task of their own,
//! so a caller who leaves keeps its place in the queue.
//!
//! Transcription uploads differ from the other two in one way that shows: the node copies the
//! whole upload to a file (`controller_http.go:1426-1438,1501-1527`, behind Go's
//! `ParseMultipartForm(32 MiB)`, `:1479`) and relays it to the provider in 1 MiB pieces
//! (`proxy_sender.go:1219-1268`), so a session failure on the provider's side hits the relay's
//! first step, which dereferences the missing result of the error answer
//! (`proxy_sender.go:1310-1316`) and panics: the connection closes without an answer.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use serde::Serialize;
use serde_json::{Value, json};

use crate::body::Paced;
use crate::faults::{DeadReason, FaultKind};
use crate::gojson;
use crate::ids::is_hex_id;
use crate::media::{self, GoF32, GoF64};
use crate::reply::{CHAT_JSON, EVENT_STREAM, Reply, ReplyBody};
use crate::rewrite::{EMBEDDING_REQUEST, SPEECH_REQUEST, decode_wrapped};
use crate::routes::chat::provider_model_error;
use crate::sessions::ChatSession;
use crate::state::{Shared, pause};
use crate::texts;

/// Dimensions the simulated embedding backend accepts at most.
pub const MAX_DIMENSIONS: i64 = 4096;
/// Vector length when the request names no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 16;
/// The simulator's own cap on a transcription upload (the node has none but its disk).
pub const MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// Form values other than the file are read whole, up to this.
const MAX_FORM_VALUE: usize = 1024 * 1024;
/// How much of an upload is kept to find a WAV header's `data` chunk.
const HEAD_KEPT: usize = 4096;
/// The provider relays speech in pieces this long (`aiengine/openai.go:463-480`).
const SPEECH_PIECE: usize = 8 * 1024;
/// What the simulated speech backend accepts at most, in characters (OpenAI's limit).
const MAX_SPEECH_INPUT: usize = 4096;

/// Which route, for the texts that differ between them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embeddings,
    Speech,
    /// `upload`: the audio came as a file (`false`: as `s3_presigned_url`).
    Transcription {
        upload: bool,
    },
}

/// The `session_id` header, checked as chat checks it (`proxyapi/requests.go:34-39`).
fn session_header(parts: &Parts) -> Result<Option<String>, Reply> {
    let header = parts
        .headers
        .get("session_id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match header {
        Some(id) if !is_hex_id(id, 64) => Err(Reply::bad_request("invalid session id")),
        other => Ok(other.map(str::to_owned)),
    }
}

/// The adapter lookup and the sender's checks before its queue (`proxy_sender.go:529-556`,
/// `:1191-1194,1477-1480,1552-1555`).
fn find_session(
    shared: &Shared,
    session_id: Option<String>,
    fault: Option<&FaultKind>,
) -> Result<(String, ChatSession), Reply> {
    // Without a session the node looks for a local model with the zero id.
    let Some(session_id) = session_id else {
        return Err(Reply::internal(texts::NO_SESSION_HEADER));
    };
    let session = match fault {
        Some(FaultKind::ChainReadBlip) => None,
        _ => shared.sessions().chat_view(&session_id),
    };
    let Some(mut session) = session else {
        return Err(Reply::internal(texts::SESSION_NOT_FOUND));
    };
    if let Some(FaultKind::DeadSession { reason }) = fault {
        if let Some(rec) = shared.sessions().get_mut(&session_id) {
            rec.dead = Some(*reason);
        }
        session.dead = Some(*reason);
    }
    match session.dead {
        Some(DeadReason::ProviderNotFound) => {
            Err(Reply::internal(DeadReason::ProviderNotFound.text()))
        }
        // These routes wrap the attestation failure in `provider request failed` rather than
        // chat's `p-node tee attestation failed` (`proxy_sender.go:1193,1479,1554` vs `:659`).
        Some(DeadReason::TeeAttestation) => {
            let text = DeadReason::TeeAttestation.text();
            let cause = text.split_once(": ").map_or(text, |(_, c)| c);
            Err(Reply::internal(&format!(
                "provider request failed: {cause}"
            )))
        }
        _ => Ok((session_id, session)),
    }
}

/// What the provider side refuses with once the request had its turn; `None`: it is served.
fn refused(shared: &Shared, kind: Kind, session: &ChatSession) -> Option<Reply> {
    let dead = session.dead.or_else(|| {
        shared
            .provider_down(&session.provider)
            .then_some(DeadReason::ProviderUnreachable)
    });
    let expired = session.closed_at != 0 || shared.now_unix() >= session.ends_at;
    let Kind::Transcription { upload } = kind else {
        // Embeddings and speech go through the provider as chat does; failover is not modelled.
        return match dead {
            Some(reason) => Some(Reply::internal(reason.text())),
            None if expired => Some(Reply::internal(texts::SESSION_EXPIRED)),
            None => None,
        };
    };
    let unreachable = DeadReason::ProviderUnreachable
        .text()
        .trim_start_matches("provider request failed: ");
    match (dead, upload) {
        // The relay's first message fails to connect (`proxy_sender.go:1253-1256,1310-1313`).
        (Some(DeadReason::ProviderUnreachable), true) => Some(Reply::internal(&format!(
            "failed to start streaming session: failed to send stream start request: {unreachable}"
        ))),
        // The provider answers the relay's first message with an error: the node panics.
        (Some(_), true) => Some(Reply::close_connection()),
        (None, true) if expired => Some(Reply::close_connection()),
        // With a presigned URL the request is one message (`proxy_sender.go:1269-1288`).
        (Some(DeadReason::ProviderUnreachable), false) => Some(Reply::internal(&format!(
            "failed to send audio transcription request: {unreachable}"
        ))),
        (Some(_), false) => Some(Reply::internal(
            "failed to send audio transcription request: provider error: user not found",
        )),
        (None, false) if expired => Some(Reply::internal(
            "failed to send audio transcription request: provider error: session expired",
        )),
        (None, _) => None,
    }
}

/// A 500 for an error the provider raised after it called its backend, as the consumer words it.
fn provider_failure(kind: Kind, text: &str) -> Reply {
    match kind {
        Kind::Transcription { upload: true } => Reply::internal(&format!(
            "failed to end streaming session: failed to process stream end request: \
             provider error: failed to prompt: {text}"
        )),
        Kind::Transcription { upload: false } => Reply::internal(&format!(
            "failed to send audio transcription request: provider error: failed to prompt: {text}"
        )),
        _ => Reply::internal(&format!(
            "provider request failed: provider error: failed to prompt: {text}"
        )),
    }
}

/// An OpenAI-style error body from the simulated backend.
fn backend_error(message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    provider_model_error(&body.to_string())
}

/// Queues for the session, then runs `answer` unless the provider refuses first or a
/// `backend_error` fault answers instead. `content_type` is what the handler set before the
/// adapter ran, which its 500s keep.
async fn on_turn<F, Fut>(
    shared: &Arc<Shared>,
    kind: Kind,
    session: ChatSession,
    fault: Option<FaultKind>,
    content_type: &'static str,
    answer: F,
) -> Reply
where
    F: FnOnce(Arc<Shared>, crate::gate::Turn) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let task = Arc::clone(shared);
    super::detached(
        async move {
            let turn = Arc::clone(&session.gate).take_turn(&task.counters).await;
            if let Some(reply) = refused(&task, kind, &session) {
                return typed(reply, content_type);
            }
            if let Some(FaultKind::BackendError { body, .. }) = &fault {
                pause(task.provider_latency.first_token).await;
                return provider_model_error(body);
            }
            typed(answer(task, turn).await, content_type)
        },
        || {},
    )
    .await
}

fn typed(reply: Reply, content_type: &'static str) -> Reply {
    if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
        reply.typed(content_type)
    } else {
        reply
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// `POST /v1/embeddings` (`controller_http.go:1727-1804`, `proxy_sender.go:1539-1613`).
pub(crate) async fn embeddings(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: Bytes,
    fault: Option<FaultKind>,
) -> Reply {
    let header = match session_header(parts) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    let request = match decode_wrapped(&EMBEDDING_REQUEST, &body) {
        Ok(v) => v,
        Err(text) => return Reply::bad_request(&text),
    };
    let (_, session) = match find_session(shared, header, fault.as_ref()) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let model = Arc::clone(&session.model_name);
    // The handler sets its content type before the adapter runs (`controller_http.go:1783`).
    on_turn(
        shared,
        Kind::Embeddings,
        session,
        fault,
        CHAT_JSON,
        move |task, turn| async move {
            pause(task.provider_latency.first_token).await;
            let reply = embed(&request, &model);
            drop(turn);
            reply
        },
    )
    .await
}

/// One embedding, in go-openai's field order (`embeddings.go@v1.41.2:49-53`).
#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    embedding: Vec<GoF32>,
    index: usize,
}

/// go-openai's `Usage` (`common.go@v1.41.2`): its detail pointers are written as `null`.
#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: Option<()>,
    completion_tokens_details: Option<()>,
}

/// The answer as the node re-marshals it through a map: top-level keys sorted
/// (`genericchatstorage/embeddings.go:75-90`).
#[derive(Serialize)]
struct EmbeddingsOut<'a> {
    data: Vec<EmbeddingOut>,
    model: &'a str,
    object: &'static str,
    usage: EmbeddingUsage,
}

/// What the simulated backend and then the provider make of the request.
fn embed(request: &Value, model: &str) -> Reply {
    let invalid_input = || {
        backend_error(
            "'$.input' is invalid. Please check the API reference: \
             https://platform.openai.com/docs/api-reference.",
            None,
            None,
        )
    };
    // Each input as (seed text, tokens).
    let inputs: Vec<(String, u64)> = match &request["input"] {
        Value::String(s) if !s.is_empty() => vec![(s.clone(), media::words(s))],
        Value::Array(items) if !items.is_empty() => {
            let token_ids = |v: &Value| -> Option<Vec<String>> {
                let list = v.as_array()?;
                if list.is_empty() {
                    return None;
                }
                list.iter()
                    .map(|t| t.as_u64().map(|n| n.to_string()))
                    .collect()
            };
            if items.iter().all(Value::is_u64) {
                let ids = token_ids(&request["input"]).unwrap_or_default();
                vec![(ids.join(","), ids.len() as u64)]
            } else if items
                .iter()
                .all(|s| s.as_str().is_some_and(|s| !s.is_empty()))
            {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| (s.to_owned(), media::words(s)))
                    .collect()
            } else {
                match items.iter().map(token_ids).collect::<Option<Vec<_>>>() {
                    Some(lists) => lists
                        .into_iter()
                        .map(|ids| (ids.join(","), ids.len() as u64))
                        .collect(),
                    None => return invalid_input(),
                }
            }
        }
        _ => return invalid_input(),
    };
    let dims = match request.get("dimensions").and_then(Value::as_i64) {
        None => DEFAULT_DIMENSIONS,
        Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => {
            usize::try_from(d).unwrap_or(DEFAULT_DIMENSIONS)
        }
        Some(d) => {
            return backend_error(
                &format!(
                    "Invalid value for 'dimensions' = {d}. Must be between 1 and {MAX_DIMENSIONS}."
                ),
                Some("dimensions"),
                Some("invalid_value"),
            );
        }
    };
    match request.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => {}
        // The backend answers each embedding as a base64 string, which the provider cannot
        // decode into go-openai's `[]float32` (`aiengine/openai.go:432-435`); its error goes back
        // unencrypted (`proxy_receiver.go:389-391`, `handlers/tcphandlers/tcp.go:57-72`) and the
        // consumer wraps it (`proxy_sender.go:833-838,1592-1595`): a 500, not a provider error.
        Some("base64") => {
            return provider_failure(
                Kind::Embeddings,
                "failed to decode response: json: cannot unmarshal string into Go struct \
                 field Embedding.data.embedding of type []float32",
            );
        }
        Some(other) => {
            return backend_error(
                &format!("Invalid value: '{other}'. Supported values are: 'float' and 'base64'."),
                Some("encoding_format"),
                Some("invalid_value"),
            );
        }
    }
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let out = EmbeddingsOut {
        data: inputs
            .iter()
            .enumerate()
            .map(|(index, (seed, _))| EmbeddingOut {
                object: "embedding",
                embedding: media::embedding(seed, dims),
                index,
            })
            .collect(),
        model,
        object: "list",
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            total_tokens: tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        },
    };
    Reply {
        status: StatusCode::OK,
        content_type: CHAT_JSON,
        body: ReplyBody::Bytes(Bytes::from(gojson::to_vec(&out))),
    }
}

// ---------------------------------------------------------------------------------------------
// Speech

/// `POST /v1/audio/speech` (`controller_http.go:1590-1725`, `proxy_sender.go:1464-1536`).
pub(crate) async fn speech(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: Bytes,
    fault: Option<FaultKind>,
) -> Reply {
    let header = match session_header(parts) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    let request = match decode_wrapped(&SPEECH_REQUEST, &body) {
        Ok(v) => v,
        Err(text) => return Reply::bad_request(&text),
    };
    // The node's defaults (`controller_http.go:1651-1656`).
    let format = request
        .get("response_format")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .unwrap_or("mp3")
        .to_owned();
    let speed = request
        .get("speed")
        .and_then(Value::as_f64)
        .filter(|s| *s != 0.0)
        .unwrap_or(1.0);
    let input = request["input"].as_str().unwrap_or_default().to_owned();
    let (_, session) = match find_session(shared, header, fault.as_ref()) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    // The content type is set only with the first piece, so earlier 500s are gin's JSON.
    let gin_json = crate::reply::GIN_JSON;
    on_turn(shared, Kind::Speech, session, fault, gin_json, move |task, turn| async move {
        if input.is_empty() {
            return backend_error("'input' is a required property", Some("input"), None);
        }
        if input.chars().count() > MAX_SPEECH_INPUT {
            return backend_error(
                &format!("string too long. Expected a string with maximum length {MAX_SPEECH_INPUT}, but got a string with length {} instead.", input.chars().count()),
                Some("input"),
                Some("string_above_max_length"),
            );
        }
        if !media::SPEECH_FORMATS.contains(&format.as_str()) {
            return backend_error(
                &format!("Invalid value: '{format}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and 'pcm'."),
                Some("response_format"),
                Some("invalid_value"),
            );
        }
        if !(0.25..=4.0).contains(&speed) {
            return backend_error(
                &format!("Invalid value for 'speed' = {speed}. Must be between 0.25 and 4."),
                Some("speed"),
                Some("invalid_value"),
            );
        }
        // Nothing is written before the backend's first bytes.
        pause(task.provider_latency.first_token).await;
        let audio = Bytes::from(media::speech(&input, speed, &format));
        let chunks: VecDeque<Bytes> = (0..audio.len())
            .step_by(SPEECH_PIECE)
            .map(|at| audio.slice(at..(at + SPEECH_PIECE).min(audio.len())))
            .collect();
        Reply {
            status: StatusCode::OK,
            content_type: media::speech_content_type(&format),
            body: ReplyBody::Paced(Box::new(Paced {
                chunks,
                turn: Some(turn),
            })),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Transcriptions

/// The form as the node binds it (`genericchatstorage/audio_transcription.go:11-27`) plus the
/// extras the simulated backend reads.
#[derive(Default)]
struct TranscriptionForm {
    /// Bytes of the `file` part, and its first bytes.
    file: Option<(u64, Vec<u8>)>,
    s3_presigned_url: String,
    /// The node's own field: what its provider parses the backend's answer as.
    format: String,
    /// An extra the node forwards to the backend: what the backend answers with.
    response_format: String,
    language: String,
    stream: bool,
    word_timestamps: bool,
}

/// Go's `strconv` texts for the form values gin binds into numbers and booleans.
fn parse_form_value(form: &mut TranscriptionForm, name: &str, value: String) -> Result<(), String> {
    match name {
        "s3_presigned_url" => form.s3_presigned_url = value,
        "format" => form.format = value,
        "response_format" => form.response_format = value,
        "language" => form.language = value,
        "temperature" if !value.is_empty() && value.parse::<f32>().is_err() => {
            return Err(format!(
                "strconv.ParseFloat: parsing {value:?}: invalid syntax"
            ));
        }
        "stream" => {
            form.stream = match value.as_str() {
                "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                _ => {
                    return Err(format!(
                        "strconv.ParseBool: parsing {value:?}: invalid syntax"
                    ));
                }
            }
        }
        "timestamp_granularities[]" | "timestamp_granularities" if value == "word" => {
            form.word_timestamps = true;
        }
        _ => {}
    }
    Ok(())
}

/// Reads the multipart body as a stream: the file is counted and only its head kept.
async fn read_form(
    content_type: Option<&str>,
    upload: Incoming,
) -> Result<TranscriptionForm, String> {
    // Go's texts (`mime/multipart`, `net/http` `ErrNotMultipart`, `ErrMissingBoundary`).
    let content_type = content_type.unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|e| match e {
        multer::Error::NoBoundary => "no multipart boundary param in Content-Type".to_owned(),
        _ => "request Content-Type isn't multipart/form-data".to_owned(),
    })?;
    let stream = http_body_util::BodyStream::new(upload).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(e)),
        }
    });
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_UPLOAD)
            .per_field(MAX_UPLOAD),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, limits);
    let mut form = TranscriptionForm::default();
    let mut seen_part = false;
    let broken = |e: multer::Error, seen: bool| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            "http: request body too large".to_owned()
        }
        _ if seen => "unexpected EOF".to_owned(),
        _ => "multipart: NextPart: EOF".to_owned(),
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| broken(e, seen_part))?
    {
        seen_part = true;
        let name = field.name().unwrap_or_default().to_owned();
        // Go files a part under `File` only when it has a file name (`multipart.ReadForm`).
        if name == "file" && field.file_name().is_some() {
            let mut len = 0u64;
            let mut head = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| broken(e, true))? {
                len += chunk.len() as u64;
                if head.len() < HEAD_KEPT {
                    let room = HEAD_KEPT - head.len();
                    head.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
            }
            if form.file.is_none() {
                form.file = Some((len, head));
            }
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| broken(e, true))? {
            if value.len() + chunk.len() > MAX_FORM_VALUE {
                return Err("multipart: message too large".to_owned());
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        // gin binds the first value of a repeated key.
        parse_form_value(&mut form, &name, value)?;
    }
    Ok(form)
}

/// `POST /v1/audio/transcriptions` (`controller_http.go:1410-1588`,
/// `proxy_sender.go:1181-1437`).
pub(crate) async fn transcription(
    shared: &Arc<Shared>,
    parts: &Parts,
    upload: Incoming,
    fault: Option<FaultKind>,
) -> Reply {
    let header = match session_header(parts) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = match read_form(content_type, upload).await {
        Ok(form) => form,
        Err(text) => return Reply::bad_request(&text),
    };
    let from_url = !form.s3_presigned_url.is_empty();
    // `FormFile` fails; the handler means to answer 400 but compares the whole text with its
    // prefix, so it answers 500 (`controller_http.go:1428-1433,1503-1506`).
    if !from_url && form.file.is_none() {
        return Reply::internal("Failed to get file: http: no such file");
    }
    let (_, session) = match find_session(shared, header, fault.as_ref()) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let kind = Kind::Transcription { upload: !from_url };
    let gin_json = crate::reply::GIN_JSON;
    on_turn(
        shared,
        kind,
        session,
        fault,
        gin_json,
        move |task, turn| async move { transcribe(&task, kind, form, turn).await },
    )
    .await
}

/// One segment of a verbose answer, in go-openai's field order (`audio.go@v1.41.2`).
#[derive(Serialize)]
struct SegmentOut<'a> {
    id: u32,
    seek: u32,
    start: GoF64,
    end: GoF64,
    text: &'a str,
    tokens: Vec<u64>,
    temperature: GoF64,
    avg_logprob: GoF64,
    compression_ratio: GoF64,
    no_speech_prob: GoF64,
    transient: bool,
}

#[derive(Serialize)]
struct WordOut<'a> {
    word: &'a str,
    start: GoF64,
    end: GoF64,
}

/// OpenAI's `usage` on transcriptions billed by duration, kept by the node as an extra key.
#[derive(Serialize)]
struct DurationUsage {
    #[serde(rename = "type")]
    kind: &'static str,
    seconds: u64,
}

/// go-openai's `AudioResponse` plus the backend's extra keys, as the node re-marshals it through
/// a map (`genericchatstorage/audio_transcription.go:112-134`): sorted keys, every field present.
#[derive(Serialize)]
struct TranscriptOut<'a> {
    duration: GoF64,
    language: &'a str,
    segments: Option<Vec<SegmentOut<'a>>>,
    task: &'a str,
    text: &'a str,
    usage: DurationUsage,
    words: Option<Vec<WordOut<'a>>>,
}

/// `AudioTranscriptionDelta` (`genericchatstorage/completion.go:350-354`).
#[derive(Serialize)]
struct DeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    delta: &'a str,
}

async fn transcribe(
    shared: &Shared,
    kind: Kind,
    form: TranscriptionForm,
    turn: crate::gate::Turn,
) -> Reply {
    let (len, head) = form.file.unwrap_or_default();
    let from_url = matches!(kind, Kind::Transcription { upload: false });
    let (text, duration) = media::transcript(&head, len, from_url);
    let latency = shared.provider_latency;
    let words: Vec<&str> = text.split_whitespace().collect();
    let response_format = if form.response_format.is_empty() {
        "json"
    } else {
        form.response_format.as_str()
    };
    if !["json", "verbose_json", "text", "srt", "vtt"].contains(&response_format) {
        return backend_error(
            &format!(
                "Invalid value: '{response_format}'. Supported values are: 'json', 'text', 'srt', 'verbose_json', and 'vtt'."
            ),
            Some("response_format"),
            Some("invalid_value"),
        );
    }
    pause(latency.first_token).await;
    if form.stream {
        // The backend streams deltas, which the provider relays one by one
        // (`aiengine/openai.go:176-233`) and the node writes as `data: …` events
        // (`controller_http.go:1544-1565`); no `[DONE]`.
        let mut chunks = VecDeque::new();
        let last = words.len().saturating_sub(1);
        for (i, word) in words.iter().enumerate() {
            let delta = if i == last {
                (*word).to_owned()
            } else {
                format!("{word} ")
            };
            let event = DeltaOut {
                kind: "transcript.text.delta",
                text: "",
                delta: &delta,
            };
            chunks.push_back(sse(&event));
        }
        chunks.push_back(sse(&DeltaOut {
            kind: "transcript.text.done",
            text: &text,
            delta: "",
        }));
        return Reply {
            status: StatusCode::OK,
            content_type: EVENT_STREAM,
            body: ReplyBody::Paced(Box::new(Paced {
                chunks,
                turn: Some(turn),
            })),
        };
    }
    let words_len = u32::try_from(words.len()).unwrap_or(u32::MAX);
    pause(latency.per_token.saturating_mul(words_len)).await;
    drop(turn);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let usage = || DurationUsage {
        kind: "duration",
        seconds: duration.ceil() as u64,
    };
    let language = if form.language.is_empty() {
        "english"
    } else {
        form.language.as_str()
    };
    // What the backend sends.
    let backend: Vec<u8> = match response_format {
        "json" => gojson::to_vec(
            &json!({"text": text, "usage": {"type": "duration", "seconds": usage().seconds}}),
        ),
        "verbose_json" => {
            let out = verbose(
                &text,
                language,
                duration,
                &words,
                form.word_timestamps,
                usage(),
            );
            gojson::to_vec(&out)
        }
        "text" => format!("{text}\n").into_bytes(),
        "srt" => format!(
            "1\n00:00:00,000 --> {}\n{text}\n\n",
            media::timestamp(duration, ',')
        )
        .into_bytes(),
        _ => format!(
            "WEBVTT\n\n00:00:00.000 --> {}\n{text}\n\n",
            media::timestamp(duration, '.')
        )
        .into_bytes(),
    };
    // The provider parses the answer by the node's `format` field, not by `response_format`
    // (`aiengine/openai.go:346-370`): JSON only for `json` and `verbose_json`; anything else is
    // relayed as text and written as `text/plain` (`controller_http.go:1541-1543`), JSON included.
    if form.format == "json" || form.format == "verbose_json" {
        if response_format == "json" || response_format == "verbose_json" {
            let out = if response_format == "json" {
                TranscriptOut {
                    duration: GoF64(0.0),
                    language: "",
                    segments: None,
                    task: "",
                    text: &text,
                    usage: usage(),
                    words: None,
                }
            } else {
                verbose(
                    &text,
                    language,
                    duration,
                    &words,
                    form.word_timestamps,
                    usage(),
                )
            };
            return Reply {
                status: StatusCode::OK,
                content_type: CHAT_JSON,
                body: ReplyBody::Bytes(Bytes::from(gojson::to_vec(&out))),
            };
        }
        let first = backend
            .iter()
            .copied()
            .find(|b| !b.is_ascii_whitespace())
            .unwrap_or(b' ');
        let why = if first.is_ascii_digit() {
            // SRT starts with its cue number, then a line break and the cue's time.
            "invalid character '0' after top-level value".to_owned()
        } else {
            format!(
                "invalid character '{}' looking for beginning of value",
                first as char
            )
        };
        return provider_failure(
            kind,
            &format!("failed to parse transcription response: {why}"),
        );
    }
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain",
        body: ReplyBody::Bytes(Bytes::from(backend)),
    }
}

fn verbose<'a>(
    text: &'a str,
    language: &'a str,
    duration: f64,
    words: &[&'a str],
    word_timestamps: bool,
    usage: DurationUsage,
) -> TranscriptOut<'a> {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let per_word = duration / words.len().max(1) as f64;
    TranscriptOut {
        duration: GoF64(round(duration)),
        language,
        segments: Some(vec![SegmentOut {
            id: 0,
            seek: 0,
            start: GoF64(0.0),
            end: GoF64(round(duration)),
            text,
            tokens: (0..words.len() as u64).map(|i| 50_364 + i).collect(),
            temperature: GoF64(0.0),
            avg_logprob: GoF64(-0.25),
            compression_ratio: GoF64(1.0),
            no_speech_prob: GoF64(0.0),
            transient: false,
        }]),
        task: "transcribe",
        text,
        usage,
        #[allow(clippy::cast_precision_loss)]
        words: word_timestamps.then(|| {
            words
                .iter()
                .enumerate()
                .map(|(i, w)| WordOut {
                    word: w,
                    start: GoF64(round(per_word * i as f64)),
                    end: GoF64(round(per_word * (i + 1) as f64)),
                })
                .collect()
        }),
    }
}

fn sse<T: Serialize>(event: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    gojson::write(&mut out, event);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
