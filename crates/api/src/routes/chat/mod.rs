mod continuation;
pub mod create_chat_completion;
pub(crate) mod forward;
pub(crate) mod json_members;
mod node_rewrites;
mod sse;
