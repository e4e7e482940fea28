use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::AppState;
use crate::error::{ApiError, ErrorResponse};
use crate::metrics::MetricsAccess;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The gateway's metrics in the Prometheus/OpenMetrics text format: requests by operation and
/// status, latency histograms, proxy-router latency and errors, the gateway's own overhead on
/// chat requests, active streams, open sessions and database pool use.
///
/// Access is configured: open (development default), a bearer token
/// (`MORPHEUS_METRICS_TOKEN`), or a separate listener (`MORPHEUS_METRICS_BIND`, then this
/// route answers 404 here).
#[utoipa::path(
    operation_id = "get_metrics_metrics_get",
    tag = "System",
    responses(
        (status = 200, description = "The metrics (OpenMetrics text)", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "A metrics token is configured and the request did not present it", body = ErrorResponse),
        (status = 404, description = "Metrics are served on a separate listener, or disabled", body = ErrorResponse),
        (status = 500, description = "Unexpected server error", body = ErrorResponse),
        (status = 503, description = "Too many open connections, overall or from this client address (answered before the request is read)", body = ErrorResponse),
    ),
    security((), ("MetricsToken" = []))
)]
#[get("/metrics")]
pub async fn get_metrics(
    state: web::Data<AppState>,
    http: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    match &state.metrics_access {
        MetricsAccess::Open => {}
        MetricsAccess::Token(expected) => {
            let presented = http
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            if !presented.is_some_and(|token| expected.matches(token)) {
                return Err(ApiError::Unauthorized("A valid metrics token is required"));
            }
        }
        MetricsAccess::Elsewhere => return Err(ApiError::NotFound("Not Found".to_owned())),
    }
    Ok(render(&state).await)
}

/// The exposition, with the gauges that are read rather than counted brought up to date.
pub async fn render(state: &AppState) -> HttpResponse {
    let pool = state.health.pool_use();
    let metrics = &state.metrics;
    metrics.db_pool_max.set(i64::from(pool.max));
    metrics
        .open_connections
        .set(i64::try_from(state.connection_limits.open()).unwrap_or(i64::MAX));
    for (label, value) in [("in_use", pool.in_use()), ("idle", pool.idle)] {
        metrics
            .db_connections
            .get_or_create(&crate::metrics::PoolLabels { state: label })
            .set(i64::from(value));
    }
    match state.sessions.count_active().await {
        Ok(open) => {
            metrics
                .open_sessions
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        // The rest of the exposition is still worth having; the gauge keeps its last value.
        Err(error) => {
            tracing::warn!(error.cause_chain = ?error, "metrics: counting sessions failed")
        }
    }
    pool_gauges(state).await;
    if let Some(governor) = state.sessions.governor() {
        metrics.stake.refresh(governor).await;
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, OPENMETRICS))
        .body(metrics.encode())
}

/// The session pool's state: this replica's from memory, all replicas' from the database, and
/// the pool's running totals carried over into the counters.
async fn pool_gauges(state: &AppState) {
    use crate::metrics::{OutcomeLabels, SessionPoolLabels};
    use std::sync::atomic::Ordering::Relaxed;
    let metrics = &state.metrics;
    let pool = state.sessions.pool();
    let set = |model: &str, label: &'static str, value: u64| {
        metrics
            .session_pool
            .get_or_create(&SessionPoolLabels {
                model: model.to_owned(),
                state: label,
            })
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    };
    for model in pool.snapshot() {
        set(&model.model, "idle", model.idle);
        set(&model.model, "busy", model.busy);
        set(&model.model, "acquiring", model.acquiring);
        set(&model.model, "waiting", model.waiting);
    }
    match pool.census().await {
        Ok(census) => {
            for model in census {
                set(model.model.as_str(), "active", model.active);
                set(model.model.as_str(), "leased", model.leased);
                set(model.model.as_str(), "opening", model.opening);
            }
        }
        Err(error) => {
            tracing::warn!(error.cause_chain = ?error, "metrics: counting pooled sessions failed")
        }
    }
    let catch_up = |family: &prometheus_client::metrics::family::Family<
        OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
                    outcome: &'static str,
                    total: &std::sync::atomic::AtomicU64| {
        let counter = family.get_or_create(&OutcomeLabels { outcome });
        let total = total.load(Relaxed);
        if total > counter.get() {
            counter.inc_by(total - counter.get());
        }
    };
    let b = state.billing.counters();
    catch_up(&metrics.credit_holds, "placed", &b.holds_placed);
    catch_up(&metrics.credit_holds, "leased", &b.holds_leased);
    catch_up(&metrics.credit_holds, "insufficient", &b.holds_refused);
    catch_up(&metrics.credit_settlements, "charged", &b.charged);
    catch_up(
        &metrics.credit_settlements,
        "estimated",
        &b.charged_estimated,
    );
    catch_up(&metrics.credit_settlements, "voided", &b.voided);
    catch_up(&metrics.credit_settlements, "reconciled", &b.reconciled);
    let l = state.limiter.counters();
    for (outcome, total) in [
        ("admitted", &l.admitted),
        ("refused_requests", &l.refused_requests),
        ("refused_tokens", &l.refused_tokens),
        ("refused_budget", &l.refused_budget),
        ("unchecked", &l.unchecked),
        ("unavailable", &l.unavailable),
    ] {
        catch_up(&metrics.rate_limit_decisions, outcome, total);
    }
    let d = &state.stream_drains;
    catch_up(&metrics.stream_drains, "drained", &d.started);
    catch_up(&metrics.stream_drains, "skipped", &d.skipped);
    let c = pool.counters();
    catch_up(&metrics.pool_claims, "immediate", &c.claims_immediate);
    catch_up(&metrics.pool_claims, "queued", &c.claims_queued);
    catch_up(&metrics.pool_claims, "refused", &c.claims_refused);
    catch_up(&metrics.pool_opens, "ok", &c.opens_ok);
    catch_up(&metrics.pool_opens, "failed", &c.opens_failed);
    catch_up(&metrics.pool_opens, "leased", &c.leases_taken);
    catch_up(&metrics.pool_opens, "closed_idle", &c.closed_idle);
    for (counter, total) in [
        (&metrics.pool_bid_walk_steps, &c.bid_walk_steps),
        (&metrics.pool_failovers, &c.failovers),
    ] {
        let total = total.load(Relaxed);
        if total > counter.get() {
            counter.inc_by(total - counter.get());
        }
    }
}
