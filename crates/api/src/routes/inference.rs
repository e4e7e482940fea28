//! What the inference routes (chat completions, embeddings) share: a refused or failed
//! request still leaves its one usage record, with the status the client got.

use morpheus_domain::UsageOutcome;
use morpheus_domain::services::{ChatError, LimitStatus, UsageMeter};

use crate::error::OpenAiError;

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
