use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use morpheus_domain::User;

use crate::AppState;
use crate::error::ApiError;

/// Tokens larger than this are refused unread: ours are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The user behind a valid access token (`Authorization: Bearer <jwt>`), who still exists and
/// is active. Refresh tokens are refused here.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub User);

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let user = state.accounts.authenticate(&token).await?;
            Ok(AuthenticatedUser(user))
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("Not authenticated"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Invalid authentication credentials"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("Invalid authentication credentials"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::Unauthorized("Invalid authentication credentials"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::Unauthorized("Could not validate credentials"));
    }
    Ok(token.to_owned())
}
