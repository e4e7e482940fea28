//! Use cases. Each public method is one operation with its own error enum, so the HTTP layer
//! maps every outcome explicitly and nothing falls through as a generic 500.

mod accounts;
mod api_key_cache;
mod api_keys;
mod automation;
mod billing;
mod catalogue;
mod chat;
mod credit_lease;
mod delegations;
mod history;
mod keyed_locks;
mod rate_limiter;
mod session_janitor;
mod session_pool;
mod sessions;
mod stake_governor;
mod upstreams;
mod usage_meter;
mod user_cache;
mod wallet;

pub use accounts::*;
pub use api_key_cache::*;
pub use api_keys::*;
pub use automation::*;
pub use billing::*;
pub use catalogue::*;
pub use chat::*;
pub use credit_lease::{FLUSH_INTERVAL as LEASE_FLUSH_INTERVAL, LeaseFigures, LeaseSettings};
pub use delegations::*;
pub use history::*;
pub use rate_limiter::*;
pub use session_janitor::*;
pub use session_pool::*;
pub use sessions::*;
pub use stake_governor::*;
pub use upstreams::*;
pub use usage_meter::*;
pub use user_cache::UserCache;
pub use wallet::*;

/// How many times a random id or prefix is redrawn after a collision before giving up. With
/// 2^53 ids (or 62^6 prefixes) a second collision in a row means something else is wrong.
const MAX_DRAWS: usize = 4;
