//! The HTTP layer: one handler per operation of `openapi.yaml`, each in a file named after it,
//! annotated for utoipa so the served document can be compared with the contract.

pub mod auth;
pub mod chat_admission;
pub mod client_address;
pub mod connections;
pub mod dto;
pub mod error;
pub mod extract;
pub mod instrumented_marketplace;
pub mod lifecycle;
pub mod metrics;
mod openapi;
pub mod rate_limit_headers;
pub mod rated_bids;
pub mod readiness;
pub mod request_context;
mod routes;
pub mod secret_token;
mod state;
pub mod stream_drains;

pub use openapi::ApiDoc;
pub use routes::{configure, metrics_only, remove_stale_spools};
pub use state::{AppState, ServiceMeta, UploadLimits};
