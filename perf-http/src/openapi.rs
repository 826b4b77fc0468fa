//! The OpenAPI 3 document of the admin API, served at `/openapi.json`.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{profile, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "perf admin API", description = "Statistics and management of a perf optimizer."),
    servers((url = "/performance")),
    paths(
        routes::health,
        routes::stats,
        routes::memory_usage,
        routes::memory_cleanup,
        routes::cache_stats,
        routes::cache_manage,
        routes::task_stats,
        routes::task_manage,
        routes::database_stats,
        routes::database_optimize,
        routes::system_resources,
        routes::get_config,
        routes::put_config,
        routes::alerts,
        routes::recommendations,
        profile::cpu_profile,
    ),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
