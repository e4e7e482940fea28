use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, post, web};
use morpheus_domain::ports::{ChatReply, Endpoint};
use morpheus_domain::services::{ApiKeyPrincipal, ChatRequest, UsageMeter};
use morpheus_domain::{TokenEstimate, UsageOutcome};

use super::vectors;
use crate::dto::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EncodingFormat, MAX_INPUTS};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, OpenAiError, OpenAiErrorBody,
};
use crate::extract::{JsonWithRaw, OpenAiKeyUser};
use crate::request_context::{TraceSpan, record_chat, record_usage};
use crate::routes::chat::{forward, json_members};
use crate::routes::inference;
use crate::routes::session::owner;
use crate::{AppState, rate_limit_headers};

/// OpenAI-compatible embeddings, computed by a provider of the Morpheus marketplace through a
/// session of an embedding model: admitted, held and billed (input tokens) like a chat
/// completion.
#[utoipa::path(
    operation_id = "create_embeddings_api_v1_embeddings_post",
    tag = "Embeddings",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "The embeddings, in the order of the input", body = EmbeddingResponse),
        (status = 400, description = "An empty or oversized `input`, a model that is not an embedding model (`model_type_mismatch`), no session and automation off, refused by the provider, or alone over a whole minute of a `tpm` limit or a whole budget", body = OpenAiErrorBody),
        (status = 401, description = "Missing, invalid, revoked or expired API key", body = OpenAiErrorBody),
        (status = 402, description = "The user's available credit does not cover what the request may cost (`insufficient_balance`)", body = OpenAiErrorBody),
        (status = 403, description = "The model is not on the key's allowed_models (`model_not_allowed`)", body = OpenAiErrorBody),
        (status = 404, description = "Unknown model, or a session that is not this key's", body = OpenAiErrorBody),
        (status = 408, description = "The request body did not arrive within the deadline; the connection is closed", body = ErrorResponse),
        (status = 413, description = "The request is larger than the body limit (4 MiB by default)", body = ErrorResponse),
        (status = 415, description = "The request declared a Content-Type other than JSON", body = ErrorResponse),
        (status = 422, description = "The request is invalid", body = HTTPValidationError),
        (status = 429, description = "A rate limit is reached, a budget window is spent, the provider is rate limiting, or every pooled session of the model is busy", body = OpenAiErrorBody),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = OpenAiErrorBody),
        (status = 502, description = "The marketplace failed or cannot be reached", body = OpenAiErrorBody),
        (status = 503, description = "No proxy-router is configured, the model list is not loaded yet, the database is unavailable, the gateway is overloaded, the limits cannot be checked and fail closed, or an operator's stake cap refused to open a session", body = OpenAiErrorBody),
        (status = 504, description = "The marketplace did not answer in time", body = OpenAiErrorBody),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("")]
pub async fn create_embeddings(
    state: web::Data<AppState>,
    http: HttpRequest,
    key: OpenAiKeyUser,
    body: JsonWithRaw<EmbeddingRequest>,
) -> Result<HttpResponse, actix_web::Error> {
    let request = &body.value;
    let owner = owner(&key.0);
    let mut meter = UsageMeter::start(state.usage.clone(), owner, false);
    let call = match prepare(&state, &http, &body, &key.0) {
        Ok(call) => call,
        Err(error) => return Err(inference::refused(meter, error)),
    };
    let answer = match state.chat.complete(owner, call, &mut meter).await {
        Ok(answer) => answer,
        Err(e) => return Err(inference::failed(meter, e)),
    };
    let limits = meter.limit_status();
    let span = TraceSpan::of(&http);
    let asked_for = request.model.clone().unwrap_or(answer.model.name.clone());
    record_chat(&span, &asked_for, &answer.model.name);
    let ChatReply::Complete { body, usage } = answer.reply else {
        meter.finish(UsageOutcome::Failed, 500);
        return Err(
            ApiError::Internal(anyhow::anyhow!("an embeddings answer came as a stream")).into(),
        );
    };
    match usage {
        Some(usage) => {
            record_usage(&span, &usage.tokens);
            meter.set_usage(usage);
        }
        // No count from the provider: charged on the input estimate, marked estimated.
        None => meter.served_input_only(),
    }
    let body = forward::with_model(&body, &asked_for).unwrap_or(body);
    let body = match request.encoding_format {
        Some(EncodingFormat::Base64) => match vectors::to_base64(&body) {
            Some(encoded) => encoded.into(),
            None => {
                // Served and charged, but not in the form asked for: say so, do not guess.
                meter.finish(UsageOutcome::Failed, 502);
                return Err(OpenAiError::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "invalid_upstream_answer",
                    None,
                    "The provider's embeddings could not be encoded as base64",
                )
                .into());
            }
        },
        _ => body,
    };
    meter.finish(UsageOutcome::Completed, 200);
    let mut response = HttpResponse::Ok();
    rate_limit_headers::insert(&mut response, &limits);
    Ok(response
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(body))
}

/// Checks the request and builds it for upstream.
fn prepare(
    state: &AppState,
    http: &HttpRequest,
    body: &JsonWithRaw<EmbeddingRequest>,
    caller: &ApiKeyPrincipal,
) -> Result<ChatRequest, actix_web::Error> {
    let request = &body.value;
    if request
        .dimensions
        .is_some_and(|d| !(1..=65_536).contains(&d))
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            vec![LocItem::from("body"), LocItem::from("dimensions")],
            "value_error",
            "Input should be between 1 and 65536",
        )])
        .into());
    }
    let items = check_input(&request.input)?;
    forward::check_unmodelled(&body.raw, &state.chat_limits).map_err(OpenAiError::from)?;
    let session_id = inference::pinned_session(state, http, request.session_id.as_ref())?;
    // The node's provider decodes floats only (see `vectors`): the format is the gateway's.
    let upstream = json_members::without(&body.raw, &["session_id", "model", "encoding_format"])
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("re-reading a validated body")))?
        .map_or_else(|| body.raw.clone(), Into::into);
    Ok(ChatRequest {
        endpoint: Endpoint::Embeddings,
        model: request.model.clone(),
        session_id,
        stream: false,
        body: upstream,
        upload: None,
        request_id: forward::request_id(http),
        estimate: TokenEstimate {
            input_tokens: items,
            // An embedding generates no tokens.
            max_output_tokens: Some(0),
        },
        policy: caller.key.policy.clone(),
        limit_multiplier: caller.limit_multiplier,
    })
}

/// Refuses an empty input, an empty item, or more than [`MAX_INPUTS`] items; returns the
/// input's estimated tokens (four characters a token, or the token ids given).
fn check_input(input: &EmbeddingInput) -> Result<u32, OpenAiError> {
    let refuse = |message: String| {
        Err(OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_input",
            Some("input"),
            message,
        ))
    };
    let (items, empty, tokens) = match input {
        EmbeddingInput::Text(text) => (
            1,
            text.is_empty(),
            TokenEstimate::tokens_in_chars(text.chars().count()),
        ),
        EmbeddingInput::Texts(texts) => (
            texts.len(),
            texts.iter().any(String::is_empty),
            texts.iter().fold(0u32, |sum, t| {
                sum.saturating_add(TokenEstimate::tokens_in_chars(t.chars().count()))
            }),
        ),
        EmbeddingInput::Tokens(ids) => (1, ids.is_empty(), count(ids.len())),
        EmbeddingInput::TokenLists(lists) => (
            lists.len(),
            lists.iter().any(Vec::is_empty),
            lists
                .iter()
                .fold(0u32, |sum, ids| sum.saturating_add(count(ids.len()))),
        ),
    };
    if items == 0 || empty {
        return refuse("input must not be empty, nor contain an empty item".to_owned());
    }
    if items > MAX_INPUTS {
        return refuse(format!(
            "input may hold at most {MAX_INPUTS} items; this one holds {items}"
        ));
    }
    Ok(tokens)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
