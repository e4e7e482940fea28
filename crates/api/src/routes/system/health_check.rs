use actix_web::{HttpResponse, get, web};
use chrono::Utc;

use crate::AppState;
use crate::dto::{DatabaseState, HealthStatus, ServiceState};

/// Liveness and database health. 503 (same body) when the database does not answer; the error
/// itself is logged, not returned.
#[utoipa::path(
    operation_id = "health_check_health_get",
    tag = "System",
    responses(
        (status = 200, description = "The service and its database are up", body = HealthStatus),
        (status = 503, description = "The database is unavailable", body = HealthStatus),
    ),
    security(())
)]
#[get("/health")]
pub async fn health_check(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.health.ping().await {
        Ok(()) => DatabaseState::Healthy,
        Err(e) => {
            tracing::warn!(error.cause_chain = ?e, "health check: database unavailable");
            DatabaseState::Unhealthy
        }
    };
    let (mut response, status) = match database {
        DatabaseState::Healthy => (HttpResponse::Ok(), ServiceState::Ok),
        DatabaseState::Unhealthy => (
            HttpResponse::ServiceUnavailable(),
            ServiceState::Unavailable,
        ),
    };
    response.json(HealthStatus {
        status,
        timestamp: Utc::now(),
        version: state.meta.version.clone(),
        database,
    })
}
