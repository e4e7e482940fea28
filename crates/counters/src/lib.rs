//! The domain's [`Counters`](morpheus_domain::ports::Counters): rate limits, budget windows
//! and the credential throttles count with them.
//!
//! - [`MemoryCounters`]: one process's memory (no Redis configured);
//! - [`RedisCounters`]: shared by every replica through Redis, one atomic Lua script a take;
//! - [`GuardedCounters`]: the failure policy in front of Redis (circuit breaker, fail-open by
//!   default, fail-closed by setting);
//! - [`AllowanceCounters`]: per-replica allowances of large limits in front of the shared
//!   store, so most requests under them cost no round trip.

mod allowance;
mod guarded;
mod memory;
mod redis;

pub use allowance::{AllowanceCounters, IDLE as ALLOWANCE_IDLE, SHARE_DIVISOR};
pub use guarded::{
    BreakerState, CounterEvents, FIRST_COOLDOWN, FailurePolicy, GuardedCounters, MAX_COOLDOWN,
};
pub use memory::{Clock, MemoryCounters, system_clock};
pub use redis::{RedisCounters, RedisOptions};
