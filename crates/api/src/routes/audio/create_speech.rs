use actix_web::{HttpRequest, HttpResponse, post, web};
use morpheus_domain::ports::{ChatReply, Endpoint};
use morpheus_domain::services::{ApiKeyPrincipal, ChatRequest, UsageMeter};
use morpheus_domain::{ReportedUsage, TokenEstimate, TokenUsage, UsageOutcome, UsageSource};

use super::media_relay;
use crate::AppState;
use crate::dto::{MAX_SPEECH_INPUT, SpeechFormat, SpeechRequest};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, OpenAiErrorBody,
};
use crate::extract::{JsonWithRaw, OpenAiKeyUser};
use crate::request_context::{TraceSpan, record_chat};
use crate::routes::chat::forward;
use crate::routes::inference;
use crate::routes::session::owner;

/// The voice when the request names none (the Morpheus gateway's default).
const DEFAULT_VOICE: &str = "af_alloy";

/// OpenAI-compatible text to speech, spoken by a provider of the Morpheus marketplace (or one
/// of the operator's providers) through a session of a TTS model: admitted, held and billed by
/// input characters. The audio is relayed as it comes, in the format asked for.
#[utoipa::path(
    operation_id = "create_speech_api_v1_audio_speech_post",
    tag = "Audio",
    request_body = SpeechRequest,
    responses(
        (status = 200, description = "The audio, in the format asked for", content(
            (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/opus"), (Vec<u8> = "audio/aac"),
            (Vec<u8> = "audio/flac"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/pcm"),
        )),
        (status = 400, description = "A model that is not a text-to-speech model (`model_type_mismatch`), no session and automation off, refused by the provider, or alone over a whole minute of a `tpm` limit or a whole budget", body = OpenAiErrorBody),
        (status = 401, description = "Missing, invalid, revoked or expired API key", body = OpenAiErrorBody),
        (status = 402, description = "The user's available credit does not cover what the request may cost (`insufficient_balance`)", body = OpenAiErrorBody),
        (status = 403, description = "The model is not on the key's allowed_models (`model_not_allowed`)", body = OpenAiErrorBody),
        (status = 404, description = "Unknown model, or a session that is not this key's", body = OpenAiErrorBody),
        (status = 408, description = "The request body did not arrive within the deadline; the connection is closed", body = ErrorResponse),
        (status = 413, description = "The request is larger than the body limit (4 MiB by default)", body = ErrorResponse),
        (status = 415, description = "The request declared a Content-Type other than JSON", body = ErrorResponse),
        (status = 422, description = "The request is invalid (an empty or too long `input`, a `speed` out of range)", body = HTTPValidationError),
        (status = 429, description = "A rate limit is reached, a budget window is spent, the provider is rate limiting, or every pooled session of the model is busy", body = OpenAiErrorBody),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = OpenAiErrorBody),
        (status = 502, description = "The marketplace failed or cannot be reached", body = OpenAiErrorBody),
        (status = 503, description = "No upstream is configured, the model list is not loaded yet, the database is unavailable, the limits cannot be checked and fail closed, or an operator's stake cap refused to open a session", body = OpenAiErrorBody),
        (status = 504, description = "The marketplace did not answer in time", body = OpenAiErrorBody),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/speech")]
pub async fn create_speech(
    state: web::Data<AppState>,
    http: HttpRequest,
    key: OpenAiKeyUser,
    body: JsonWithRaw<SpeechRequest>,
) -> Result<HttpResponse, actix_web::Error> {
    let owner = owner(&key.0);
    let mut meter = UsageMeter::start(state.usage.clone(), owner, false);
    let (call, characters) = match prepare(&state, &http, &body.value, &key.0) {
        Ok(prepared) => prepared,
        Err(error) => return Err(inference::refused(meter, error)),
    };
    let answer = match state.chat.complete(owner, call, &mut meter).await {
        Ok(answer) => answer,
        Err(e) => return Err(inference::failed(meter, e)),
    };
    let asked_for = body
        .value
        .model
        .clone()
        .unwrap_or(answer.model.name.clone());
    record_chat(&TraceSpan::of(&http), &asked_for, &answer.model.name);
    let ChatReply::Media(media) = answer.reply else {
        meter.finish(UsageOutcome::Failed, 500);
        return Err(ApiError::Internal(anyhow::anyhow!("a speech answer came as a chat")).into());
    };
    // Billed by what was asked to be said: the gateway counts it, exactly.
    meter.set_usage(ReportedUsage {
        tokens: TokenUsage {
            prompt_tokens: characters,
            completion_tokens: 0,
        },
        source: UsageSource::Gateway,
    });
    let limits = meter.limit_status();
    Ok(media_relay::respond(media, meter, &limits))
}

/// Checks the request and builds it for upstream; also returns the characters it is billed on.
fn prepare(
    state: &AppState,
    http: &HttpRequest,
    request: &SpeechRequest,
    caller: &ApiKeyPrincipal,
) -> Result<(ChatRequest, u32), actix_web::Error> {
    let invalid = |field: &str, kind: &str, message: &str| -> actix_web::Error {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("body"), LocItem::from(field)],
            kind,
            message,
        ))
        .into()
    };
    let characters = request.input.chars().count();
    if characters == 0 {
        return Err(invalid(
            "input",
            "string_too_short",
            "input must not be empty",
        ));
    }
    if characters > MAX_SPEECH_INPUT {
        return Err(invalid(
            "input",
            "string_too_long",
            &format!("input may be at most {MAX_SPEECH_INPUT} characters"),
        ));
    }
    if request
        .speed
        .is_some_and(|s| !(0.25..=4.0).contains(&s) || !s.is_finite())
    {
        return Err(invalid(
            "speed",
            "value_error",
            "speed must be from 0.25 to 4.0",
        ));
    }
    if request
        .voice
        .as_ref()
        .is_some_and(|v| v.is_empty() || v.len() > 256)
    {
        return Err(invalid(
            "voice",
            "value_error",
            "voice must be 1 to 256 characters",
        ));
    }
    if request
        .instructions
        .as_ref()
        .is_some_and(|i| i.chars().count() > MAX_SPEECH_INPUT)
    {
        return Err(invalid(
            "instructions",
            "string_too_long",
            &format!("instructions may be at most {MAX_SPEECH_INPUT} characters"),
        ));
    }
    let session_id = inference::pinned_session(state, http, request.session_id.as_ref())?;
    // The node decodes a fixed request (`genericchatstorage/audio_speech.go`): the gateway
    // sends exactly that, with its defaults filled in.
    let mut upstream = serde_json::json!({
        "input": request.input,
        "voice": request.voice.as_deref().unwrap_or(DEFAULT_VOICE),
        "response_format": request.response_format.unwrap_or(SpeechFormat::Mp3).as_str(),
        "speed": request.speed.unwrap_or(1.0),
    });
    if let Some(instructions) = &request.instructions {
        upstream["instructions"] = instructions.clone().into();
    }
    let body = serde_json::to_vec(&upstream)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding a speech request: {e}")))?;
    let characters = u32::try_from(characters).unwrap_or(u32::MAX);
    let call = ChatRequest {
        endpoint: Endpoint::Speech,
        model: request.model.clone(),
        session_id,
        stream: false,
        body: body.into(),
        upload: None,
        request_id: forward::request_id(http),
        estimate: TokenEstimate {
            input_tokens: characters,
            max_output_tokens: Some(0),
        },
        policy: caller.key.policy.clone(),
        limit_multiplier: caller.limit_multiplier,
    };
    Ok((call, characters))
}
