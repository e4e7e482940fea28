//! Error responses shared by many operations, declared once for the OpenAPI document
//! (`responses(..., JsonBodyErrors, ServerErrors)` in a handler's `#[utoipa::path]`).
//!
//! These types only describe responses; the bodies themselves are built by `ApiError`.

use utoipa::IntoResponses;

use super::{ErrorResponse, HTTPValidationError};

/// What an operation with a JSON request body can answer before its handler runs.
#[derive(IntoResponses)]
pub enum JsonBodyErrors {
    #[response(
        status = 408,
        description = "The request body did not arrive within its deadline; the connection is closed"
    )]
    RequestTimeout(ErrorResponse),
    #[response(status = 413, description = "The request body is larger than 1 MiB")]
    PayloadTooLarge(ErrorResponse),
    #[response(
        status = 415,
        description = "The request declared a Content-Type other than JSON"
    )]
    UnsupportedMediaType(ErrorResponse),
    #[response(status = 422, description = "The request is invalid")]
    Invalid(HTTPValidationError),
}

/// What any operation that reaches the database can answer.
#[derive(IntoResponses)]
pub enum ServerErrors {
    #[response(
        status = 500,
        description = "Unexpected server error (details are logged, not returned)"
    )]
    Internal(ErrorResponse),
    #[response(
        status = 503,
        description = "The database is unavailable or the server is saturated (hashing, or too many open connections overall or from this client address); retry later"
    )]
    Unavailable(ErrorResponse),
}

/// What any operation that calls the marketplace's proxy-router can answer because of it.
#[derive(IntoResponses)]
pub enum MarketplaceErrors {
    #[response(
        status = 400,
        description = "The proxy-router or provider refused the request"
    )]
    Refused(ErrorResponse),
    #[response(
        status = 429,
        description = "The proxy-router or provider is rate limiting; see Retry-After"
    )]
    RateLimited(ErrorResponse),
    #[response(
        status = 502,
        description = "The proxy-router failed, cannot be reached, or sent an unusable answer"
    )]
    BadGateway(ErrorResponse),
    #[response(status = 504, description = "The proxy-router did not answer in time")]
    Timeout(ErrorResponse),
}
