use actix_web::{HttpRequest, HttpResponse, delete, web};
use morpheus_domain::services::ChatRemoval;

use crate::AppState;
use crate::dto::ChatDeleteQuery;
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedQuery};

/// Archive one of the user's chats (the default: it leaves the default listing and keeps its
/// messages), or, with `archive_only=false`, delete it and its messages for good.
#[utoipa::path(
    operation_id = "delete_chat_api_v1_chat_history_chats__chat_id__delete",
    tag = "Chat history",
    params(
        ("chat_id" = String, Path, description = "The chat's id (a UUID)"),
        ChatDeleteQuery,
    ),
    responses(
        (status = 204, description = "Archived or deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no chat with this id", body = ErrorResponse),
        (status = 422, description = "archive_only is not a boolean", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[delete("/chats/{chat_id}")]
pub async fn delete_chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<ChatDeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = super::chat_id(&req)?;
    let how = match query.0.archive_only.unwrap_or(true) {
        true => ChatRemoval::Archive,
        false => ChatRemoval::Delete,
    };
    state.chat_history.remove(key.0.user_id(), id, how).await?;
    Ok(HttpResponse::NoContent().finish())
}
