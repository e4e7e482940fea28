//! Adapters for the domain's credential ports: JWT signing, argon2id hashing and login
//! throttling.

mod auth_throttle;
mod jwt;
mod password;

pub use auth_throttle::{AuthThrottleSettings, GovernorAuthThrottle};
pub use jwt::{JwtCodec, JwtSettings};
pub use password::Argon2Hasher;
