//! The one error type of the HTTP layer, and the only place where outcomes become status codes.
//!
//! Policy (after crates.io's `util/errors.rs`):
//! - validation failures are 422 with the FastAPI-compatible `{"detail":[{loc,msg,type}]}` body;
//! - everything else is `{"detail":"<message>"}` with the status of its variant;
//! - a 500 logs the whole cause chain and tells the client nothing about it.

mod body;
mod fields;
mod from_domain;
mod marketplace;
mod openai;
mod responses;
mod stake;

pub use body::{CodedErrorResponse, ErrorResponse, HTTPValidationError, LocItem, ValidationError};
pub use fields::Fields;
pub use marketplace::UpstreamFailure;
pub use openai::{OpenAiError, OpenAiErrorBody, OpenAiErrorDetail};
pub use responses::{JsonBodyErrors, MarketplaceErrors, ServerErrors};

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

/// One field-level validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub loc: Vec<LocItem>,
    pub msg: String,
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: Vec<LocItem>, kind: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    /// A problem with one field of the JSON body.
    pub fn body(field: &str, invalid: morpheus_domain::validation::Invalid) -> Self {
        Self::new(
            vec![LocItem::from("body"), LocItem::from(field)],
            invalid.kind,
            invalid.message,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but not enough for this operation (a wrong current password, a sign-in
    /// that is not recent).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The declared Content-Type is not the one the route reads (named here).
    #[error("Content-Type must be {0}")]
    UnsupportedMediaType(&'static str),
    /// The request body did not arrive within its deadline; the connection is closed.
    #[error("The request body was not received in time")]
    RequestTimeout,
    #[error("{message}")]
    TooManyRequests {
        message: &'static str,
        retry_after: Duration,
    },
    #[error("{0}")]
    ServiceUnavailable(&'static str),
    /// An operator's cap refused (the stake caps): the body carries a stable `code`.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
    /// The marketplace failed; the status comes from [`UpstreamFailure`].
    #[error("{}", .0.message)]
    Upstream(UpstreamFailure),
    #[error("Internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(error: FieldError) -> Self {
        Self::Validation(vec![error])
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(failure) => failure.status,
            ApiError::Refused { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Validation(errors) => {
                return response.json(HTTPValidationError::from(errors.as_slice()));
            }
            ApiError::Unauthorized(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                // Round up: telling a client to retry in 0 s invites a hot loop.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response.insert_header((header::RETRY_AFTER, secs.max(1)));
            }
            ApiError::ServiceUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, 1));
            }
            ApiError::RequestTimeout => {
                // The rest of the body may still be on its way: the connection cannot be
                // reused.
                response.force_close();
            }
            ApiError::Upstream(failure) => {
                if let Some(secs) = failure.retry_after_secs() {
                    response.insert_header((header::RETRY_AFTER, secs));
                }
            }
            ApiError::Refused {
                code, retry_after, ..
            } => {
                if let Some(secs) = retry_after {
                    response.insert_header((header::RETRY_AFTER, *secs));
                }
                return response.json(CodedErrorResponse {
                    detail: self.to_string(),
                    code: Some((*code).to_owned()),
                });
            }
            ApiError::Internal(cause) => {
                tracing::error!(error.cause_chain = ?cause, "request failed with an internal error");
            }
            _ => {}
        }
        response.json(ErrorResponse {
            detail: self.to_string(),
        })
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if e.chain()
            .any(|c| c.is::<morpheus_domain::ports::StorageUnavailable>())
        {
            tracing::warn!(error.cause_chain = ?e, "the database is unavailable");
            return ApiError::ServiceUnavailable("The database is unavailable; try again shortly");
        }
        ApiError::Internal(e)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn body_of(e: &ApiError) -> (u16, String) {
        let r = e.error_response();
        let status = r.status().as_u16();
        let bytes = r.into_body().try_into_bytes().unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn an_internal_error_tells_the_client_nothing_about_its_cause() {
        let cause = anyhow::anyhow!("UNIQUE constraint failed: users.email")
            .context("inserting a user at postgres://admin:hunter2@db");
        let (status, body) = body_of(&ApiError::from(cause));
        assert_eq!(status, 500);
        assert_eq!(body, r#"{"detail":"Internal server error"}"#);
    }

    #[test]
    fn an_unavailable_store_is_a_503_with_retry_after() {
        let cause = anyhow::Error::new(morpheus_domain::ports::StorageUnavailable)
            .context("taking a connection from the pool");
        let e = ApiError::from(cause);
        assert_eq!(
            e.error_response()
                .headers()
                .get(header::RETRY_AFTER)
                .unwrap(),
            "1"
        );
        let (status, body) = body_of(&e);
        assert_eq!(status, 503);
        assert!(!body.contains("pool"), "{body}");
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let e = ApiError::TooManyRequests {
            message: "slow down",
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            e.error_response()
                .headers()
                .get(header::RETRY_AFTER)
                .unwrap(),
            "2"
        );
    }
}
