use actix_web::{HttpRequest, HttpResponse, put, web};

use crate::AppState;
use crate::dto::{ChatResponse, ChatUpdate};
use crate::error::{ApiError, ErrorResponse, JsonBodyErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedJson};

/// Rename one of the user's chats; its `updated_at` moves to now.
#[utoipa::path(
    operation_id = "update_chat_api_v1_chat_history_chats__chat_id__put",
    tag = "Chat history",
    params(("chat_id" = String, Path, description = "The chat's id (a UUID)")),
    request_body = ChatUpdate,
    responses(
        (status = 200, description = "The renamed chat", body = ChatResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no chat with this id", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[put("/chats/{chat_id}")]
pub async fn update_chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
    body: ValidatedJson<ChatUpdate>,
) -> Result<HttpResponse, ApiError> {
    let id = super::chat_id(&req)?;
    let title = super::title(&body.0.title)?;
    let chat = state
        .chat_history
        .rename(key.0.user_id(), id, title)
        .await?;
    Ok(HttpResponse::Ok().json(ChatResponse::from(chat)))
}
