use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, post, web};
use morpheus_domain::ports::{ChatReply, Endpoint, Upload};
use morpheus_domain::services::{ApiKeyPrincipal, ChatRequest, UsageMeter};
use morpheus_domain::{
    ReportedUsage, TokenEstimate, TokenUsage, UsageOutcome, UsageSource, assumed_seconds,
    billed_seconds, wav_seconds,
};

use super::media_relay;
use super::upload_form::{self, SpooledFile, TranscriptionUpload};
use crate::AppState;
use crate::dto::{
    TranscriptionForm, TranscriptionFormat, TranscriptionResponse, TranscriptionStreamEvent,
};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, OpenAiErrorBody};
use crate::extract::OpenAiKeyUser;
use crate::request_context::{TraceSpan, record_chat};
use crate::routes::chat::forward;
use crate::routes::inference;
use crate::routes::session::owner;

/// OpenAI-compatible speech to text by a provider of the Morpheus marketplace (or one of the
/// operator's providers) through a session of an STT model: admitted, held and billed by audio
/// seconds. The upload is spooled to disk as it arrives (never held in memory) and streamed to
/// the provider from there. The transcript comes in the format asked for, or as events.
#[utoipa::path(
    operation_id = "create_transcription_api_v1_audio_transcriptions_post",
    tag = "Audio",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The transcript: JSON for `json` and `verbose_json`, text for `text`, `srt` and `vtt`, server-sent events with `stream=true`", content(
            (TranscriptionResponse = "application/json"),
            (String = "text/plain"),
            (TranscriptionStreamEvent = "text/event-stream"),
        )),
        (status = 400, description = "A model that is not a speech-to-text model (`model_type_mismatch`), no session and automation off, refused by the provider, or alone over a whole minute of a `tpm` limit or a whole budget", body = OpenAiErrorBody),
        (status = 401, description = "Missing, invalid, revoked or expired API key", body = OpenAiErrorBody),
        (status = 402, description = "The user's available credit does not cover what the request may cost (`insufficient_balance`)", body = OpenAiErrorBody),
        (status = 403, description = "The model is not on the key's allowed_models (`model_not_allowed`)", body = OpenAiErrorBody),
        (status = 404, description = "Unknown model, or a session that is not this key's", body = OpenAiErrorBody),
        (status = 408, description = "The upload did not arrive within its deadline (5 minutes by default); the connection is closed", body = ErrorResponse),
        (status = 413, description = "The file is larger than the upload limit (25 MiB by default)", body = ErrorResponse),
        (status = 415, description = "The request is not `multipart/form-data`", body = ErrorResponse),
        (status = 422, description = "The form is invalid: no file, an empty file, an unknown `response_format`, a `temperature` out of range, an unreadable form", body = HTTPValidationError),
        (status = 429, description = "A rate limit is reached, a budget window is spent, the provider is rate limiting, or every pooled session of the model is busy", body = OpenAiErrorBody),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = OpenAiErrorBody),
        (status = 502, description = "The marketplace failed or cannot be reached", body = OpenAiErrorBody),
        (status = 503, description = "No upstream is configured, the model list is not loaded yet, the database is unavailable, the limits cannot be checked and fail closed, or an operator's stake cap refused to open a session", body = OpenAiErrorBody),
        (status = 504, description = "The marketplace did not answer in time", body = OpenAiErrorBody),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/transcriptions")]
pub async fn create_transcription(
    state: web::Data<AppState>,
    http: HttpRequest,
    key: OpenAiKeyUser,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let owner = owner(&key.0);
    let mut meter = UsageMeter::start(state.usage.clone(), owner, false);
    let upload = match upload_form::read(&http, payload, state.uploads).await {
        Ok(upload) => upload,
        Err(error) => return Err(inference::refused(meter, error.into())),
    };
    let requested_model = upload.fields.model.clone();
    let (call, measured) = match prepare(&state, &http, upload, &key.0) {
        Ok(prepared) => prepared,
        Err(error) => return Err(inference::refused(meter, error)),
    };
    let stream = call.stream;
    let answer = match state.chat.complete(owner, call, &mut meter).await {
        Ok(answer) => answer,
        Err(e) => return Err(inference::failed(meter, e)),
    };
    let asked_for = requested_model.unwrap_or(answer.model.name.clone());
    record_chat(&TraceSpan::of(&http), &asked_for, &answer.model.name);
    let ChatReply::Media(media) = answer.reply else {
        meter.finish(UsageOutcome::Failed, 500);
        return Err(ApiError::Internal(anyhow::anyhow!("a transcript came as a chat")).into());
    };
    // Billed by audio seconds: the provider's count when its answer has one, else the
    // gateway's own measure of a WAV file, else an estimate from the file's size.
    match (media.usage, measured) {
        (Some(usage), _) if !stream => meter.set_usage(usage),
        (_, Some(seconds)) => meter.set_usage(ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: seconds,
                completion_tokens: 0,
            },
            source: UsageSource::Gateway,
        }),
        _ => meter.served_input_only(),
    }
    let limits = meter.limit_status();
    Ok(media_relay::respond(media, meter, &limits))
}

/// Builds the request for upstream from the form; also returns the audio's seconds when the
/// gateway could read them (a WAV file).
fn prepare(
    state: &AppState,
    http: &HttpRequest,
    upload: TranscriptionUpload,
    caller: &ApiKeyPrincipal,
) -> Result<(ChatRequest, Option<u32>), actix_web::Error> {
    let TranscriptionUpload { fields, file } = upload;
    let session_id = inference::pinned_session(state, http, fields.session_id.as_ref())?;
    let measured = wav_seconds(&file.head, file.length).map(billed_seconds);
    let estimate = measured.unwrap_or_else(|| assumed_seconds(file.length));
    let format = fields.response_format.unwrap_or(TranscriptionFormat::Json);
    let mut forwarded = vec![("response_format".to_owned(), format.as_str().to_owned())];
    for (name, value) in [
        ("language", fields.language),
        ("prompt", fields.prompt),
        ("temperature", fields.temperature.map(|t| t.to_string())),
    ] {
        if let Some(value) = value {
            forwarded.push((name.to_owned(), value));
        }
    }
    for granularity in &fields.timestamp_granularities {
        forwarded.push(("timestamp_granularities[]".to_owned(), granularity.clone()));
    }
    if fields.stream {
        forwarded.push(("stream".to_owned(), "true".to_owned()));
    }
    let upload = Upload {
        fields: forwarded,
        file_name: upstream_file_name(&file),
        content_type: file
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        length: Some(file.length),
        source: Arc::new(file) as Arc<dyn morpheus_domain::ports::UploadSource>,
    };
    let call = ChatRequest {
        endpoint: Endpoint::Transcriptions,
        model: fields.model,
        session_id,
        stream: fields.stream,
        body: bytes::Bytes::new(),
        upload: Some(upload),
        request_id: forward::request_id(http),
        estimate: TokenEstimate {
            input_tokens: estimate,
            max_output_tokens: Some(0),
        },
        policy: caller.key.policy.clone(),
        limit_multiplier: caller.limit_multiplier,
    };
    Ok((call, measured))
}

/// A name no other upload has (the node stores each upload in a file named after it), with
/// the extension backends read the format from: the client's, else one the content type or
/// the file's first bytes give.
fn upstream_file_name(file: &SpooledFile) -> String {
    let from_name = file
        .client_name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|ext| {
            (1..=8).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    let from_type = || {
        let essence = file.content_type.as_deref()?.split(';').next()?.trim();
        Some(
            match essence {
                "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
                "audio/mpeg" | "audio/mp3" => "mp3",
                "audio/flac" | "audio/x-flac" => "flac",
                "audio/ogg" => "ogg",
                "audio/webm" | "video/webm" => "webm",
                "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
                "video/mp4" => "mp4",
                _ => return None,
            }
            .to_owned(),
        )
    };
    let from_bytes = || match file.head.get(..4) {
        Some(b"RIFF") => Some("wav".to_owned()),
        Some(b"fLaC") => Some("flac".to_owned()),
        Some(b"OggS") => Some("ogg".to_owned()),
        Some([b'I', b'D', b'3', _]) => Some("mp3".to_owned()),
        _ => None,
    };
    let ext = from_name
        .or_else(from_type)
        .or_else(from_bytes)
        .unwrap_or_else(|| "bin".to_owned());
    format!("upload-{}.{ext}", uuid::Uuid::new_v4().simple())
}
