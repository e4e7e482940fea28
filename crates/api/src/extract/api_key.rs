use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use morpheus_domain::services::ApiKeyPrincipal;

use crate::AppState;
use crate::error::{ApiError, OpenAiError};

/// The API key a request was made with (`Authorization: Bearer sk-…` or bare `sk-…`), verified
/// on its whole secret, active, and owned by an active user. The request is bound to this key,
/// not to "some key of the user".
#[derive(Debug, Clone)]
pub struct ApiKeyUser(pub ApiKeyPrincipal);

impl FromRequest for ApiKeyUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = presented_key(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let presented = presented?;
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let principal = state.api_keys.authenticate(&presented).await?;
            Ok(ApiKeyUser(principal))
        })
    }
}

/// [`ApiKeyUser`] for the OpenAI-compatible endpoints: the same check, with failures in
/// OpenAI's error shape so SDKs raise `AuthenticationError`.
#[derive(Debug, Clone)]
pub struct OpenAiKeyUser(pub ApiKeyPrincipal);

impl FromRequest for OpenAiKeyUser {
    type Error = OpenAiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, OpenAiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let inner = ApiKeyUser::from_request(req, payload);
        Box::pin(async move {
            inner
                .await
                .map(|k| OpenAiKeyUser(k.0))
                .map_err(OpenAiError::from)
        })
    }
}

fn presented_key(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("API key missing"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Invalid API key"))?
        .trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    if key.is_empty() {
        return Err(ApiError::Unauthorized("API key missing"));
    }
    Ok(key.to_owned())
}
