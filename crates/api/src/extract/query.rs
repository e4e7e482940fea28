use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::future::{Ready, ready};
use serde::de::DeserializeOwned;

use super::serde_errors::field_error;
use crate::error::ApiError;

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
