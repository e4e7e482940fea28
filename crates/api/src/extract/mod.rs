//! Request extractors that answer every bad input with the documented error shape (actix's own
//! extractors answer 400 text/plain).

mod api_key;
mod bearer;
mod json;
mod path;
mod query;
mod serde_errors;

pub use api_key::{ApiKeyUser, OpenAiKeyUser};
pub use bearer::AuthenticatedUser;
pub use json::{
    BodyDeadline, BodyLimit, ForwardedBodyDeadline, ForwardedBodyLimit, JsonWithRaw, OptionalJson,
    ValidatedJson,
};
pub use path::path_id;
pub use query::{ValidatedQuery, page};
