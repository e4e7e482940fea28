use actix_web::{HttpResponse, get, web};
use chrono::Utc;

use crate::AppState;
use crate::dto::{DatabaseState, HealthStatus, ServiceState};
use crate::error::ErrorResponse;

/// Liveness: 200 whenever the process serves requests, with the database's state for
/// information (the error itself is logged, not returned). Whether this replica should get
/// traffic is `/ready`'s question: a database outage must not make an orchestrator restart
/// healthy processes.
#[utoipa::path(
    operation_id = "health_check_health_get",
    tag = "System",
    responses(
        (status = 200, description = "The process is alive; `database` tells whether its database answers", body = HealthStatus),
        (status = 500, description = "Unexpected server error", body = ErrorResponse),
        (status = 503, description = "Too many open connections, overall or from this client address (answered before the request is read)", body = ErrorResponse),
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
    HttpResponse::Ok().json(HealthStatus {
        status: ServiceState::Ok,
        timestamp: Utc::now(),
        version: state.meta.version.clone(),
        database,
    })
}
