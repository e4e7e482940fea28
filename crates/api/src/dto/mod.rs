//! Request and response bodies, as named in the OpenAPI document. Requests refuse unknown
//! fields (no mass assignment of `is_admin`, `user_id`, …); responses list every field they
//! may carry, and no others.

mod api_key;
mod audio;
mod automation;
mod billing;
mod chat;
mod chat_history;
mod delegation;
mod embeddings;
mod models;
mod session;
mod system;
mod user;
mod wallet;

pub use api_key::*;
pub use audio::*;
pub use automation::*;
pub use billing::*;
pub use chat::*;
pub use chat_history::*;
pub use delegation::*;
pub use embeddings::*;
pub use models::*;
pub use session::*;
pub use system::*;
pub use user::*;
pub use wallet::*;
