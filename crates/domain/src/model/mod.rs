//! Entities and the newtypes that make invalid values unrepresentable.

mod api_key;
mod audio;
mod automation;
mod credits;
mod delegation;
mod history;
mod ids;
mod key_policy;
mod marketplace;
mod model_type;
mod money;
mod rate_limits;
mod session;
mod stake;
mod tokens;
mod usage;
mod user;
mod wallet;

pub use api_key::*;
pub use audio::*;
pub use automation::*;
pub use credits::*;
pub use delegation::*;
pub use history::*;
pub use ids::*;
pub use key_policy::*;
pub use marketplace::*;
pub use model_type::*;
pub use money::*;
pub use rate_limits::*;
pub use session::*;
pub use stake::*;
pub use tokens::*;
pub use usage::*;
pub use user::*;
pub use wallet::*;
