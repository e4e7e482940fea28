use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::{DocumentationLinks, ServiceInfo};
use crate::error::ErrorResponse;

/// What this service is and where its documentation lives.
#[utoipa::path(
    operation_id = "root__get",
    tag = "System",
    responses(
        (status = 200, description = "Service information", body = ServiceInfo),
        (status = 500, description = "Unexpected server error", body = ErrorResponse),
        (status = 503, description = "Too many open connections, overall or from this client address (answered before the request is read)", body = ErrorResponse),
    ),
    security(())
)]
#[get("/")]
pub async fn root(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ServiceInfo {
        name: state.meta.name.clone(),
        version: state.meta.version.clone(),
        description: state.meta.description.clone(),
        documentation: DocumentationLinks {
            swagger_ui: "/docs".to_owned(),
            openapi: "/api/v1/openapi.json".to_owned(),
        },
    })
}
