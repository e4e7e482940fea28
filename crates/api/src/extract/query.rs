use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::future::{Ready, ready};
use serde::de::DeserializeOwned;

use morpheus_domain::Page;

use super::serde_errors::field_error;
use crate::error::{ApiError, FieldError, LocItem};

/// Query parameters with field-level 422s.
#[derive(Debug)]
pub struct ValidatedQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ValidatedQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parser = form_urlencoded::parse(req.query_string().as_bytes());
        let de = serde_urlencoded::Deserializer::new(parser);
        ready(
            serde_path_to_error::deserialize(de)
                .map(ValidatedQuery)
                .map_err(|e| ApiError::validation(field_error("query", e))),
        )
    }
}

/// `skip` and `limit` query parameters as a [`Page`]: `skip` in 0–1,000,000, `limit` in
/// 1–[`Page::MAX_LIMIT`] (`default_limit` when absent); 422 naming the parameter otherwise.
pub fn page(skip: Option<i64>, limit: Option<i64>, default_limit: u32) -> Result<Page, ApiError> {
    page_within(skip, limit, default_limit, Page::MAX_LIMIT)
}

/// [`page`] with another largest `limit` (a chat's messages are read 500 at a time).
pub fn page_within(
    skip: Option<i64>,
    limit: Option<i64>,
    default_limit: u32,
    max_limit: u32,
) -> Result<Page, ApiError> {
    let bounded = |name: &str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            u32::try_from(value).map_err(|_| ApiError::Internal(anyhow::anyhow!("bounded")))
        } else {
            Err(ApiError::validation(FieldError::new(
                vec![LocItem::from("query"), LocItem::from(name)],
                if value < min {
                    "greater_than_equal"
                } else {
                    "less_than_equal"
                },
                format!("Input should be between {min} and {max}"),
            )))
        }
    };
    Ok(Page {
        skip: bounded("skip", skip.unwrap_or(0), 0, 1_000_000)?,
        limit: bounded(
            "limit",
            limit.unwrap_or(i64::from(default_limit)),
            1,
            i64::from(max_limit),
        )?,
    })
}
