//! Entities and the newtypes that make invalid values unrepresentable.

mod api_key;
mod automation;
mod delegation;
mod ids;
mod tokens;
mod user;
mod wallet;

pub use api_key::*;
pub use automation::*;
pub use delegation::*;
pub use ids::*;
pub use tokens::*;
pub use user::*;
pub use wallet::*;
