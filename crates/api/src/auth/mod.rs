//! Adapters for the domain's credential ports: JWT signing, argon2id hashing and login
//! throttling.

mod jwt;
mod login_throttle;
mod password;

pub use jwt::{JwtCodec, JwtSettings};
pub use login_throttle::{GovernorLoginThrottle, LoginThrottleSettings};
pub use password::Argon2Hasher;
