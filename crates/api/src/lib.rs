//! The HTTP layer: one handler per operation of `openapi.yaml`, each in a file named after it,
//! annotated for utoipa so the served document can be compared with the contract.

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
mod openapi;
mod routes;
mod state;

pub use openapi::ApiDoc;
pub use routes::configure;
pub use state::{AppState, ServiceMeta};
