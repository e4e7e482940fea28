//! Request extractors that answer every bad input with the documented error shape (actix's own
//! extractors answer 400 text/plain).

mod api_key;
mod bearer;
mod json;
mod operator;
mod path;
mod query;
mod serde_errors;
mod user_or_key;

pub use api_key::{ApiKeyUser, OpenAiKeyUser};
pub use bearer::AuthenticatedUser;
pub use json::{
    BodyDeadline, BodyLimit, ForwardedBodyDeadline, ForwardedBodyLimit, JsonWithRaw, OptionalJson,
    ValidatedJson,
};
pub use operator::require_operator;
pub use path::path_id;
pub use query::{ValidatedQuery, page, page_within};
pub use user_or_key::UserOrKey;
