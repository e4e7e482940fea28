use actix_web::{HttpRequest, HttpResponse, delete, web};

use crate::AppState;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::ApiKeyUser;

/// Delete one message of one of the user's chats. The others keep their sequence (a gap is
/// left), and the chat's `updated_at` moves to now.
#[utoipa::path(
    operation_id = "delete_message_api_v1_chat_history_messages__message_id__delete",
    tag = "Chat history",
    params(("message_id" = String, Path, description = "The message's id (a UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no message with this id", body = ErrorResponse),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[delete("/messages/{message_id}")]
pub async fn delete_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
) -> Result<HttpResponse, ApiError> {
    let id = super::message_id(&req)?;
    state
        .chat_history
        .delete_message(key.0.user_id(), id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
