use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use chrono::Utc;

use crate::AppState;
use crate::dto::{DatabaseState, MarketplaceState, ReadinessStatus, ReadyState};
use crate::readiness::Dependencies;

/// A dependency that does not answer within this is counted as down: readiness probes are
/// frequent and must not hang.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: whether this replica should receive traffic. 200 when the database and the
/// proxy-router answer (or, with no proxy-router, when the database answers and a providers
/// file is configured); 503 (same body) when one does not, when neither is configured, or
/// once shutdown has begun (`draining`). Compare `/health`, which only says
/// the process is alive. Probes share their checks (see `crate::readiness`): a result is at
/// most a second old.
#[utoipa::path(
    operation_id = "readiness_check_ready_get",
    tag = "System",
    responses(
        (status = 200, description = "The database and the proxy-router answer", body = ReadinessStatus),
        (status = 503, description = "A dependency is down or not configured, or the process is shutting down", body = ReadinessStatus),
    ),
    security(())
)]
#[get("/ready")]
pub async fn readiness_check(state: web::Data<AppState>) -> HttpResponse {
    let Dependencies {
        database,
        marketplace,
    } = state.readiness.current(check_dependencies(&state)).await;
    let status = if state.lifecycle.is_draining() {
        ReadyState::Draining
    } else if database == DatabaseState::Healthy
        && (marketplace == MarketplaceState::Healthy
            // A gateway of providers alone serves without a marketplace.
            || (marketplace == MarketplaceState::NotConfigured && state.chat.has_providers()))
    {
        ReadyState::Ready
    } else {
        ReadyState::Unavailable
    };
    let mut response = match status {
        ReadyState::Ready => HttpResponse::Ok(),
        _ => HttpResponse::ServiceUnavailable(),
    };
    response.json(ReadinessStatus {
        status,
        timestamp: Utc::now(),
        database,
        marketplace,
    })
}

/// Asks the database and the proxy-router, at the same time.
async fn check_dependencies(state: &AppState) -> Dependencies {
    let database = async {
        match tokio::time::timeout(CHECK_TIMEOUT, state.health.ping()).await {
            Ok(Ok(())) => DatabaseState::Healthy,
            Ok(Err(error)) => {
                tracing::warn!(error.cause_chain = ?error, "readiness: database unavailable");
                DatabaseState::Unhealthy
            }
            Err(_) => {
                tracing::warn!("readiness: the database did not answer in time");
                DatabaseState::Unhealthy
            }
        }
    };
    let marketplace = async {
        if !state.marketplace_configured {
            return MarketplaceState::NotConfigured;
        }
        match tokio::time::timeout(CHECK_TIMEOUT, state.sessions.market().health()).await {
            Ok(Ok(())) => MarketplaceState::Healthy,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: proxy-router unavailable");
                MarketplaceState::Unhealthy
            }
            Err(_) => {
                tracing::warn!("readiness: the proxy-router did not answer in time");
                MarketplaceState::Unhealthy
            }
        }
    };
    let (database, marketplace) = tokio::join!(database, marketplace);
    Dependencies {
        database,
        marketplace,
    }
}
