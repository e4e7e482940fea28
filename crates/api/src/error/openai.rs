//! Errors of the OpenAI-compatible chat endpoint, in OpenAI's shape
//! (`{"error":{"message","type","param","code"}}`), so every OpenAI SDK raises its usual
//! exception classes. Statuses come from the same tables as the rest of the API.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use morpheus_domain::services::{
    ChatError, ChatSessionError, HoldError, InsufficientCredit, LimitExceeded, LimitRefusal,
    LimitStatus, RateKind, ResolveModelError,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, UpstreamFailure};

/// An error in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    #[schema(required = true)]
    pub param: Option<String>,
    /// A stable machine-readable code.
    #[schema(required = true)]
    pub code: Option<String>,
    /// With `insufficient_balance`: the credit available, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0.00120000")]
    pub available: Option<String>,
    /// With `insufficient_balance`: what the request may cost at most, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0.00410000")]
    pub estimated_cost: Option<String>,
    /// With `budget_exceeded`: when the spent budget window resets (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>, example = "2026-12-03T18:00:00+00:00")]
    pub resets_at: Option<String>,
    /// With `model_type_mismatch`: the model as the request named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// With `model_type_mismatch`: the listed model it resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_model: Option<String>,
    /// With `model_type_mismatch`: that model's on-chain id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_id: Option<String>,
    /// With `model_type_mismatch`: the type the route needs (`LLM`, `EMBEDDING`, `STT`, `TTS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_type: Option<String>,
    /// With `model_type_mismatch`: the model's own type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
}

impl OpenAiErrorDetail {
    pub fn new(kind: &str, code: &str, param: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: kind.to_owned(),
            param: param.map(str::to_owned),
            code: Some(code.to_owned()),
            available: None,
            estimated_cost: None,
            resets_at: None,
            requested_model: None,
            resolved_model: None,
            resolved_id: None,
            requested_type: None,
            model_type: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}", .detail.message)]
pub struct OpenAiError {
    pub status: StatusCode,
    /// Boxed: results carrying an error stay small.
    pub detail: Box<OpenAiErrorDetail>,
    pub retry_after: Option<u64>,
    /// The rate limits that applied, sent as `X-RateLimit-*` headers.
    pub limits: LimitStatus,
}

impl OpenAiError {
    pub fn new(
        status: StatusCode,
        kind: &str,
        code: &str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            detail: Box::new(OpenAiErrorDetail::new(kind, code, param, message)),
            retry_after: None,
            limits: LimitStatus::default(),
        }
    }

    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: (*self.detail).clone(),
        }
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        crate::rate_limit_headers::insert(&mut response, &self.limits);
        response.json(self.body())
    }
}

impl From<UpstreamFailure> for OpenAiError {
    fn from(failure: UpstreamFailure) -> Self {
        let retry_after = failure.retry_after_secs();
        let mut error = OpenAiError::new(
            failure.status,
            failure.kind,
            failure.code,
            None,
            failure.message,
        );
        error.retry_after = retry_after;
        error
    }
}

/// The rest of the API's errors (authentication, storage), re-shaped.
impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        if let ApiError::Upstream(failure) = error {
            return failure.into();
        }
        if let ApiError::Refused {
            status,
            code,
            message,
            retry_after,
        } = error
        {
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limit_error"
            } else {
                "server_error"
            };
            let mut mapped = OpenAiError::new(status, kind, code, None, message);
            mapped.retry_after = retry_after;
            return mapped;
        }
        let status = error.status_code();
        // The 500 body says nothing about the cause; `error_response` logs it.
        let message = match &error {
            ApiError::Internal(_) => {
                let _ = error.error_response();
                "Internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let (kind, code) = match status.as_u16() {
            401 => ("authentication_error", "invalid_api_key"),
            403 => ("permission_error", "forbidden"),
            404 => ("invalid_request_error", "not_found"),
            429 => ("rate_limit_error", "rate_limited"),
            400..=499 => ("invalid_request_error", "invalid_request"),
            503 => ("server_error", "service_unavailable"),
            _ => ("server_error", "internal_error"),
        };
        let mut mapped = OpenAiError::new(status, kind, code, None, message);
        if let ApiError::TooManyRequests { retry_after, .. } = error {
            mapped.retry_after = Some(retry_after.as_secs().max(1));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            mapped.retry_after = Some(1);
        }
        mapped
    }
}

/// 402, as the original gateway answers it: what is available and what the request needed.
impl From<InsufficientCredit> for OpenAiError {
    fn from(short: InsufficientCredit) -> Self {
        let mut error = OpenAiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_balance",
            "insufficient_balance",
            None,
            format!(
                "Insufficient credits: {} USD available, this request may cost up to {} USD",
                short.available, short.estimated_cost
            ),
        );
        error.detail.available = Some(short.available.to_string());
        error.detail.estimated_cost = Some(short.estimated_cost.to_string());
        error
    }
}

impl From<LimitExceeded> for OpenAiError {
    fn from(e: LimitExceeded) -> Self {
        OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            e.code,
            Some(&e.param),
            e.message,
        )
    }
}

impl From<ChatError> for OpenAiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Model(ResolveModelError::Unknown(name)) => OpenAiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                Some("model"),
                format!(
                    "The model '{name}' does not exist; GET /api/v1/models lists the models available"
                ),
            ),
            ChatError::Model(ResolveModelError::NoDefault) => OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_required",
                Some("model"),
                "No model was given and no default model is available; name one from GET /api/v1/models",
            ),
            ChatError::Model(ResolveModelError::NotLoaded) => {
                let mut error = OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "catalogue_unavailable",
                    None,
                    "The model list has not been loaded from the marketplace yet; retry shortly",
                );
                error.retry_after = Some(5);
                error
            }
            ChatError::Model(ResolveModelError::TypeMismatch(mismatch)) => {
                let message = ResolveModelError::TypeMismatch(mismatch.clone()).to_string();
                let mut error = OpenAiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "model_type_mismatch",
                    Some("model"),
                    message,
                );
                let detail = &mut error.detail;
                detail.requested_model = Some(mismatch.requested);
                detail.resolved_model = Some(mismatch.resolved);
                detail.resolved_id = Some(mismatch.resolved_id.to_string());
                detail.requested_type = Some(mismatch.route.to_string());
                detail.model_type = Some(mismatch.model_type.to_string());
                error
            }
            ChatError::ModelNotAllowed(name) => OpenAiError::new(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "model_not_allowed",
                Some("model"),
                format!(
                    "This API key may not use the model '{name}'; its allowed_models are set \
                     with PATCH /api/v1/auth/keys/{{key_id}}"
                ),
            ),
            ChatError::Session(e) => e.into(),
            ChatError::Upstream(e) => ApiError::from(e).into(),
            ChatError::Credit(HoldError::Insufficient(short)) => short.into(),
            ChatError::Credit(HoldError::Unknown(e)) => ApiError::from(e).into(),
            ChatError::Limited(refusal) => (*refusal).into(),
        }
    }
}

/// Rate limits and budgets: 429 when waiting helps (with `Retry-After` and the headers), 400
/// when the request alone is over the limit, 503 when the limits cannot be checked and the
/// operator chose to refuse then.
impl From<LimitRefusal> for OpenAiError {
    fn from(refusal: LimitRefusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            LimitRefusal::RateLimited {
                kind,
                retry_after,
                status,
                ..
            } => {
                let kind = match kind {
                    RateKind::Requests => "requests",
                    RateKind::Tokens => "tokens",
                };
                let mut error = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    kind,
                    "rate_limit_exceeded",
                    None,
                    message,
                );
                error.retry_after = Some(retry_after.as_secs().max(1));
                error.limits = status;
                error
            }
            LimitRefusal::BudgetExceeded {
                resets_at,
                retry_after,
                status,
                ..
            } => {
                let mut error = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    "budget_exceeded",
                    None,
                    message,
                );
                error.detail.resets_at = Some(resets_at.to_rfc3339());
                error.retry_after = Some(retry_after.as_secs().max(1));
                error.limits = status;
                error
            }
            LimitRefusal::TokensOverLimit { .. } => OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "request_too_large",
                Some("max_tokens"),
                message,
            ),
            LimitRefusal::CostOverBudget { .. } => OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "request_over_budget",
                Some("max_tokens"),
                message,
            ),
            LimitRefusal::Unavailable { retry_after } => {
                let mut error = OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "limits_unavailable",
                    None,
                    message,
                );
                error.retry_after = Some(retry_after.as_secs().max(1));
                error
            }
        }
    }
}

impl From<ChatSessionError> for OpenAiError {
    fn from(e: ChatSessionError) -> Self {
        match e {
            ChatSessionError::NotFound => OpenAiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "session_not_found",
                Some("session_id"),
                "Session not found",
            ),
            ChatSessionError::Ended => OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "session_expired",
                Some("session_id"),
                "The session has ended; open a new one with POST /api/v1/session/modelsession, \
                 or enable automation with PUT /api/v1/automation/settings",
            ),
            ChatSessionError::AutomationDisabled => OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "no_active_session",
                None,
                "This API key has no active session for the model and automation is disabled: \
                 enable it with PUT /api/v1/automation/settings {\"is_enabled\": true}, or open \
                 a session with POST /api/v1/session/modelsession?model_id=<model>",
            ),
            ChatSessionError::PoolBusy(busy) => {
                let mut error = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "pool_busy",
                    None,
                    "Every marketplace session for this model is busy and no more may be opened \
                     now; retry after the time in Retry-After",
                );
                error.retry_after = Some(busy.retry_after.as_secs().max(1));
                error
            }
            ChatSessionError::ModelUnavailable => {
                let mut error = OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "model_unavailable",
                    Some("model"),
                    "No provider of this model accepts a session now; retry later or choose \
                     another model from GET /api/v1/models",
                );
                error.retry_after = Some(30);
                error
            }
            ChatSessionError::Stake(refusal) => refusal.into(),
            ChatSessionError::Upstream(e) => ApiError::from(e).into(),
            ChatSessionError::Unknown(e) => ApiError::from(e).into(),
        }
    }
}
