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
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseState {
    Healthy,
    Unhealthy,
}
