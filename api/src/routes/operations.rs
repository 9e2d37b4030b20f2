//! What operators and tools call: liveness, readiness and the OpenAPI document.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension,
    extract::State,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, AppState, extract::Json};

/// The body of a successful health or readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Status {
    #[schema(example = "ok")]
    status: String,
}

impl Status {
    fn ok() -> Self {
        Status {
            status: "ok".to_owned(),
        }
    }
}

/// Liveness: answers while the process runs, without touching the database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is running.", body = Status)),
)]
pub(crate) async fn healthz() -> Json<Status> {
    Json(Status::ok())
}

/// How long `/readyz` waits for the database to answer its ping.
pub(crate) const READINESS_BOUND: Duration = Duration::from_secs(1);

/// Readiness: 200 when the database answers, else 503 `service_unavailable` with
/// `Retry-After`. It answers within about a second: at once while the database is known to be
/// down, else after a ping bounded by one second (a pool with no connection free within it
/// counts as not ready, too; a pooled connection closed under it is replaced, as for any read,
/// see `service::db::ping`). It becomes ready again by itself once the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    // The 503 is added to every path by `openapi::finish`.
    responses((status = 200, description = "The database answers.", body = Status)),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if state.health.is_down() {
        return Err(ApiError::DatabaseDown);
    }
    match tokio::time::timeout(READINESS_BOUND, service::db::ping(&state.db)).await {
        Ok(Ok(())) => Ok(Json(Status::ok())),
        Ok(Err(error)) => {
            state.health.report_trouble();
            Err(error.into())
        }
        Err(_) => {
            state.health.report_trouble();
            Err(ApiError::NotReady)
        }
    }
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub(crate) async fn openapi_json(
    Extension(document): Extension<Arc<serde_json::Value>>,
) -> Response {
    Json(document.as_ref()).into_response()
}
