use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::{ChatListQuery, ChatResponse};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedQuery, page};

/// The user's chats, most recently updated first, one page at a time (`skip`, `limit`), each
/// with its message count. A bare list, as the 2026 gateway answers: a page shorter than
/// `limit` is the last. Archived chats only with `include_archived=true`.
#[utoipa::path(
    operation_id = "list_chats_api_v1_chat_history_chats_get",
    tag = "Chat history",
    params(ChatListQuery),
    responses(
        (status = 200, description = "A page of the user's chats", body = Vec<ChatResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 422, description = "A parameter is out of range or not of its type", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[get("/chats")]
pub async fn list_chats(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<ChatListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.0;
    let page = page(query.skip, query.limit, 50)?;
    let include_archived = query.include_archived.unwrap_or(false);
    let chats = state
        .chat_history
        .list(key.0.user_id(), include_archived, page)
        .await?;
    let listed: Vec<ChatResponse> = chats.into_iter().map(ChatResponse::from).collect();
    Ok(HttpResponse::Ok().json(listed))
}
