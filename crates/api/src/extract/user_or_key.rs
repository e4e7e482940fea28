use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload};
use morpheus_domain::UserId;

use super::{ApiKeyUser, AuthenticatedUser};
use crate::error::ApiError;

/// The user behind either credential, for read-only routes a dashboard (access token) and a
/// script (API key) both use: a bearer credential starting `sk-` is checked as an API key,
/// anything else as an access token.
#[derive(Debug, Clone, Copy)]
pub struct UserOrKey(pub UserId);

impl FromRequest for UserOrKey {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_key = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim())
            .is_some_and(|v| {
                let credential = match v.split_once(' ') {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                    _ => v,
                };
                credential.starts_with("sk-")
            });
        if is_key {
            let key = ApiKeyUser::from_request(req, payload);
            Box::pin(async move { Ok(UserOrKey(key.await?.0.user_id())) })
        } else {
            let user = AuthenticatedUser::from_request(req, payload);
            Box::pin(async move { Ok(UserOrKey(user.await?.0.id)) })
        }
    }
}
