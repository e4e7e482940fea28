use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use morpheus_domain::{TokenClaims, User};

use crate::AppState;
use crate::error::ApiError;

/// Tokens larger than this are refused unread: ours are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The user behind a valid access token (`Authorization: Bearer <jwt>`), who still exists, is
/// active and has not signed out since the token was issued; and what the token says. Refresh
/// tokens are refused here.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub User, pub TokenClaims);

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
            let signed_in = state.accounts.authenticate(&token).await?;
            Ok(AuthenticatedUser(signed_in.user, signed_in.token))
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
