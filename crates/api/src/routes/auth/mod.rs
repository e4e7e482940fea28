pub mod change_password;
pub mod create_api_key;
pub mod delete_api_key;
pub mod delete_delegation;
pub mod delete_private_key;
pub mod delete_user_account;
pub mod get_active_user_delegation;
pub mod get_api_keys;
pub mod get_current_user;
pub mod get_default_api_key;
pub mod get_first_api_key;
pub mod get_private_key_status;
pub mod get_user_delegations;
pub mod login;
pub mod logout;
pub mod refresh_token;
pub mod register_user;
pub mod set_default_api_key;
pub mod store_delegation;
pub mod store_private_key;
pub mod update_api_key;

use actix_web::HttpResponse;
use actix_web::http::header;

use crate::error::ErrorResponse;

/// Every other method on a GET-only path that a `{…_id}` path would otherwise take (the id
/// `active`, `default` or `first`): 405 with `Allow: GET`, as the spec says the path has only
/// GET.
pub async fn only_get() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "GET"))
        .json(ErrorResponse {
            detail: "Method Not Allowed".to_owned(),
        })
}
