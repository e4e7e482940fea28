use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::AppState;
use crate::dto::ChatDetailResponse;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::ApiKeyUser;

/// One of the user's chats (archived or not) with its first 500 messages in sequence order;
/// `message_count` says whether there are more, read with the chat's message listing.
#[utoipa::path(
    operation_id = "get_chat_api_v1_chat_history_chats__chat_id__get",
    tag = "Chat history",
    params(("chat_id" = String, Path, description = "The chat's id (a UUID)")),
    responses(
        (status = 200, description = "The chat and its messages", body = ChatDetailResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no chat with this id", body = ErrorResponse),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[get("/chats/{chat_id}")]
pub async fn get_chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
) -> Result<HttpResponse, ApiError> {
    let id = super::chat_id(&req)?;
    let (summary, messages) = state.chat_history.get(key.0.user_id(), id).await?;
    Ok(HttpResponse::Ok().json(ChatDetailResponse::new(summary, messages)))
}
