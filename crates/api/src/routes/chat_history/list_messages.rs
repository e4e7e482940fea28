use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::AppState;
use crate::dto::{ChatMessageResponse, MessageListQuery};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedQuery, page_within};

/// The most messages one page may hold.
const MAX_PAGE: u32 = 500;

/// A page of one of the user's chats' messages in sequence order (`skip`, `limit`; a bare
/// list, as the 2026 gateway answers: a page shorter than `limit` is the last).
#[utoipa::path(
    operation_id = "list_messages_api_v1_chat_history_chats__chat_id__messages_get",
    tag = "Chat history",
    params(
        ("chat_id" = String, Path, description = "The chat's id (a UUID)"),
        MessageListQuery,
    ),
    responses(
        (status = 200, description = "A page of the chat's messages", body = Vec<ChatMessageResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no chat with this id", body = ErrorResponse),
        (status = 422, description = "skip or limit is out of range", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[get("/chats/{chat_id}/messages")]
pub async fn list_messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<MessageListQuery>,
) -> Result<HttpResponse, ApiError> {
    let chat = super::chat_id(&req)?;
    let page = page_within(query.0.skip, query.0.limit, 100, MAX_PAGE)?;
    let messages = state
        .chat_history
        .messages(key.0.user_id(), chat, page)
        .await?;
    let listed: Vec<ChatMessageResponse> = messages
        .into_iter()
        .map(ChatMessageResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}
