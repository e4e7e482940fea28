use actix_web::{HttpResponse, post, web};
use morpheus_domain::{Email, Password};

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{Token, UserLogin};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::ValidatedJson;

/// Log in with email and password; returns an access token and a refresh token.
///
/// An unknown email, a wrong password and a disabled account all get the same 401. An address
/// that looks like an account's (the same confusable skeleton) logs in to that account.
/// Attempts are limited per account (look-alike addresses counting as one) and per client
/// address (429 with `Retry-After`).
#[utoipa::path(
    operation_id = "login_api_v1_auth_login_post",
    tag = "Auth",
    request_body = UserLogin,
    responses(
        (status = 200, description = "Logged in", body = Token),
        (status = 401, description = "Incorrect email or password", body = ErrorResponse),
        (status = 429, description = "Too many login attempts for this account or from this client", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(())
)]
#[post("/login")]
pub async fn login(
    client: Client,
    state: web::Data<AppState>,
    body: ValidatedJson<UserLogin>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let email = fields.check("email", Email::parse(&body.email));
    let password = fields.check("password", Password::for_login(body.password));
    let (Some(email), Some(password)) = (email, password) else {
        return Err(fields.into());
    };
    let pair = state.accounts.login(email, password, client.ip()).await?;
    Ok(HttpResponse::Ok().json(Token::from(pair)))
}
