use actix_web::{HttpResponse, post, web};
use morpheus_domain::{Email, Password, UserName};

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{UserCreate, UserResponse};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::ValidatedJson;

/// Register a new user.
///
/// The email is normalised to NFKC and lower case, and an address that looks like an existing
/// one (the same Unicode TS #39 confusable skeleton) belongs to that account: the same 400 as
/// a duplicate. Addresses with invisible or formatting characters are refused (422). Passwords
/// are 8 to 1024 characters, not only whitespace or control characters, and hashed with
/// argon2id.
#[utoipa::path(
    operation_id = "register_user_api_v1_auth_register_post",
    tag = "Auth",
    request_body = UserCreate,
    responses(
        (status = 201, description = "The account was created", body = UserResponse),
        (status = 400, description = "An account with this email already exists", body = ErrorResponse),
        (status = 429, description = "Too many registrations from this client address", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(())
)]
#[post("/register")]
pub async fn register_user(
    client: Client,
    state: web::Data<AppState>,
    body: ValidatedJson<UserCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let email = fields.check("email", Email::parse(&body.email));
    let password = fields.check("password", Password::parse(body.password));
    let name = fields.check("name", body.name.map(UserName::parse).transpose());
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(fields.into());
    };
    let user = state
        .accounts
        .register(email, password, name, client.ip())
        .await?;
    Ok(HttpResponse::Created().json(UserResponse::from(user)))
}
