//! A typed HTTP client for the Morpheus proxy-router ("C-node"), implementing the domain's
//! [`Marketplace`](morpheus_domain::ports::Marketplace) and
//! [`ModelFeed`](morpheus_domain::ports::ModelFeed) ports.
//!
//! The proxy-router's wire format (PascalCase entities, big integers as decimal strings or as
//! JSON numbers beyond 2^64) stays private to this crate: callers only see domain types.
//!
//! Safety rules the client keeps:
//! * nothing that may have spent money (a session open, a close, an approve) is sent twice
//!   blindly; an ambiguous open is resolved by looking for the session it may have created
//!   ([`open_recovery`]);
//! * every body read is capped and every wait is bounded;
//! * error texts handed to callers never contain credentials or internal addresses.

mod audio;
mod chat;
mod client;
mod config;
mod diagnosis;
mod errors;
mod feed;
mod members;
mod numbers;
mod open_recovery;
mod provider;
mod provider_error;
mod retry;
mod sanitize;
mod sse;
mod transport;
mod usage;
mod wire;

pub use client::ProxyRouterClient;
pub use config::ProxyRouterConfig;
pub use diagnosis::{
    ChatStorage, Credentials, NEEDED_PERMISSIONS, NodeDiagnosis, Permission, Reach,
};
pub use feed::ActiveModelsFeed;
pub use provider::{OpenAiProvider, ProviderConfig};
