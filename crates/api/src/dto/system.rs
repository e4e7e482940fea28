use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub documentation: DocumentationLinks,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentationLinks {
    pub swagger_ui: String,
    pub openapi: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthStatus {
    #[schema(inline)]
    pub status: ServiceState,
    pub timestamp: DateTime<Utc>,
    pub version: String,
    #[schema(inline)]
    pub database: DatabaseState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// The process serves requests (`/health` is liveness only).
    Ok,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseState {
    Healthy,
    Unhealthy,
}

/// Whether this replica should receive traffic (`GET /ready`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessStatus {
    #[schema(inline)]
    pub status: ReadyState,
    pub timestamp: DateTime<Utc>,
    #[schema(inline)]
    pub database: DatabaseState,
    #[schema(inline)]
    pub marketplace: MarketplaceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyState {
    /// The database and the proxy-router answer.
    Ready,
    /// A dependency does not answer (or no proxy-router is configured).
    Unavailable,
    /// The process is shutting down: in-flight requests finish, new ones belong elsewhere.
    Draining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketplaceState {
    Healthy,
    Unhealthy,
    NotConfigured,
}
