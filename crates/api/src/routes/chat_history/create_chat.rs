use actix_web::{HttpResponse, post, web};
use morpheus_domain::ChatSummary;

use crate::AppState;
use crate::dto::{ChatCreate, ChatResponse};
use crate::error::{ApiError, ErrorResponse, JsonBodyErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedJson};

/// Create a chat for the key's user. A user stores a bounded number of chats, archived ones
/// included (`MORPHEUS_MAX_CHATS_PER_USER`, 409 beyond).
#[utoipa::path(
    operation_id = "create_chat_api_v1_chat_history_chats_post",
    tag = "Chat history",
    request_body = ChatCreate,
    responses(
        (status = 201, description = "The new chat", body = ChatResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 409, description = "The user already stores the most chats allowed", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/chats")]
pub async fn create_chat(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    body: ValidatedJson<ChatCreate>,
) -> Result<HttpResponse, ApiError> {
    let title = super::title(&body.0.title)?;
    let chat = state.chat_history.create(key.0.user_id(), title).await?;
    let created = ChatSummary {
        chat,
        message_count: 0,
    };
    Ok(HttpResponse::Created().json(ChatResponse::from(created)))
}
