pub mod create_chat_completion;
mod forward;
mod sse;
