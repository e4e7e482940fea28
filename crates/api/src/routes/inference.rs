//! What the inference routes (chat completions, embeddings, audio) share: where a request may
//! go, and that a refused or failed request still leaves its one usage record, with the status
//! the client got.

use actix_web::HttpRequest;
use morpheus_domain::ports::MarketplaceError;
use morpheus_domain::services::{ChatError, ChatSessionError, LimitStatus, UsageMeter};
use morpheus_domain::{SessionId, UsageOutcome};

use crate::AppState;
use crate::error::{ApiError, OpenAiError};
use crate::routes::chat::forward;

/// Where a checked request may go: nowhere when neither the marketplace nor a provider is
/// configured (503), else the session the caller pinned in the body or a header, if any.
pub fn pinned_session(
    state: &AppState,
    http: &HttpRequest,
    in_body: Option<&String>,
) -> Result<Option<SessionId>, OpenAiError> {
    if !state.marketplace_configured && !state.chat.has_providers() {
        return Err(ApiError::from(MarketplaceError::NotConfigured).into());
    }
    forward::requested_session(in_body, http)
        // An id that cannot be a session cannot be one of this key's either.
        .map(|raw| SessionId::parse(&raw).map_err(|_| ChatSessionError::NotFound.into()))
        .transpose()
}

/// Refused before the request reached the marketplace (its own checks, the caps).
pub fn refused(meter: UsageMeter, error: actix_web::Error) -> actix_web::Error {
    meter.finish(
        UsageOutcome::Failed,
        error.as_response_error().status_code().as_u16(),
    );
    error
}

/// Refused by admission or failed upstream before any answer reached the client.
pub fn failed(meter: UsageMeter, error: ChatError) -> actix_web::Error {
    let mut error = OpenAiError::from(error);
    if error.limits == LimitStatus::default() {
        // Admitted, then failed: the headers still tell what the request counted.
        error.limits = meter.limit_status();
    }
    meter.finish(UsageOutcome::Failed, error.status.as_u16());
    error.into()
}
