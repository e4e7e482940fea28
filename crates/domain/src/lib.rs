//! The Morpheus gateway's domain: what accounts, API keys, wallet keys, delegations and
//! automation settings are, the rules they obey, and the ports through which the outside world
//! (storage, token signing, password hashing) is reached.
//!
//! Nothing here knows about HTTP, SQL or JWT libraries: adapters in `morpheus-api` and
//! `morpheus-storage` implement the traits in [`ports`].

pub mod crypto;
pub mod model;
pub mod ports;
pub mod services;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validation;

pub use model::*;
