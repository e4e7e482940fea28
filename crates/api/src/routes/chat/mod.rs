pub mod create_chat_completion;
mod forward;
mod json_members;
mod node_rewrites;
mod sse;
