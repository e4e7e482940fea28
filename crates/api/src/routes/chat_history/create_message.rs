use actix_web::{HttpRequest, HttpResponse, post, web};
use morpheus_domain::services::MessageDraft;
use morpheus_domain::{MessageContent, MessageRole, parse_message_tokens};

use crate::AppState;
use crate::dto::{ChatMessageCreate, ChatMessageResponse};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedJson};

/// Add a message to one of the user's chats. Its `sequence` is one more than the chat's
/// highest, assigned atomically (concurrent posts never share one), and the chat's
/// `updated_at` moves to the message's `created_at`. Bounded per chat
/// (`MORPHEUS_MAX_MESSAGES_PER_CHAT`, 409 beyond) and per message
/// (`MORPHEUS_MAX_CHAT_MESSAGE_BYTES` of content, 422 beyond).
#[utoipa::path(
    operation_id = "create_message_api_v1_chat_history_chats__chat_id__messages_post",
    tag = "Chat history",
    params(("chat_id" = String, Path, description = "The chat's id (a UUID)")),
    request_body = ChatMessageCreate,
    responses(
        (status = 201, description = "The stored message", body = ChatMessageResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The user has no chat with this id", body = ErrorResponse),
        (status = 409, description = "The chat already holds the most messages allowed", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/chats/{chat_id}/messages")]
pub async fn create_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: ApiKeyUser,
    body: ValidatedJson<ChatMessageCreate>,
) -> Result<HttpResponse, ApiError> {
    let chat = super::chat_id(&req)?;
    let body = body.0;
    let mut fields = Fields::default();
    let role = fields.check("role", MessageRole::parse(&body.role));
    let max_bytes = state.chat_history.max_message_bytes();
    let content = fields.check("content", MessageContent::parse(body.content, max_bytes));
    let tokens = fields.check("tokens", parse_message_tokens(body.tokens));
    let (Some(role), Some(content), Some(tokens)) = (role, content, tokens) else {
        return Err(fields.into());
    };
    let draft = MessageDraft {
        role,
        content,
        tokens,
    };
    let message = state
        .chat_history
        .add_message(key.0.user_id(), chat, draft)
        .await?;
    Ok(HttpResponse::Created().json(ChatMessageResponse::from(message)))
}
