//! The domain's repository ports, implemented for [`Database`](crate::Database). Each file
//! holds one table's row types, their conversions to and from the domain, and one port.

mod api_keys;
mod automation;
mod chat_history;
mod credits;
mod delegations;
mod health;
mod refresh_tokens;
mod revocations;
mod session_pool;
mod sessions;
mod usage;
pub(crate) mod users;
mod wallet_keys;

use diesel::result::{DatabaseErrorKind, Error};

fn is_unique_violation(error: &Error) -> bool {
    matches!(
        error,
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Affected-row counts fit easily; saturating keeps the conversion free of `unwrap`.
fn to_u64(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}
