//! Reading one's own writes when reads may go to a replica: the `x-read-after-lsn` header.
//!
//! With replica routing on (`DATABASE_REPLICA_URL`), every successful write (any method other
//! than GET, HEAD or OPTIONS that answers 2xx) carries `x-read-after-lsn: <lsn>`, the primary's
//! WAL position after the write committed. A client that sends it back on a read is served from
//! the replica only once the replica has replayed that position (waiting at most 500 ms), and
//! from the primary otherwise, so it sees its write whichever process serves it. A read without
//! the header may lag behind the primary by up to the replica's lag bound (5 s). Without replica
//! routing the header is never sent, costs nothing, and is ignored when a client sends it.
//! See `service::pools`.

use axum::{
    body::Body,
    extract::{FromRequestParts, State},
    http::{HeaderValue, Method, Request, request::Parts},
    middleware::Next,
    response::Response,
};
use service::pools::Lsn;
use utoipa::IntoParams;

use crate::{ApiError, AppState, schemas};

/// The header a write's response carries and a read may send back.
pub const READ_AFTER_LSN: &str = "x-read-after-lsn";

/// The header as the OpenAPI document describes it on every read (`params(ReadAfterHeader)`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Never built: it only describes the header.
pub struct ReadAfterHeader {
    #[param(rename = "x-read-after-lsn", schema_with = schemas::read_after_lsn)]
    read_after_lsn: Option<String>,
}

/// The LSN a read must see, from the request's `x-read-after-lsn`, if it sent one. A value that
/// is not an LSN is 422 `validation_failed`.
#[derive(Debug, Clone, Copy)]
pub struct ReadAfter(pub Option<Lsn>);

impl<S: Send + Sync> FromRequestParts<S> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(READ_AFTER_LSN) else {
            return Ok(ReadAfter(None));
        };
        let invalid = || {
            ApiError::InvalidInput(format!(
                "{READ_AFTER_LSN}: must be an LSN as a write's response gave it, such as 0/16B3748"
            ))
        };
        let text = value.to_str().map_err(|_| invalid())?;
        text.trim()
            .parse::<Lsn>()
            .map(|lsn| ReadAfter(Some(lsn)))
            .map_err(|_| invalid())
    }
}

/// Adds `x-read-after-lsn` to a successful write's response when reads may go to a replica.
pub(crate) async fn stamp(
    State(state): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let is_write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = next.run(request).await;
    if !is_write || !response.status().is_success() || !state.reads.has_replica() {
        return response;
    }
    match state.reads.primary_lsn().await {
        Ok(Some(lsn)) => {
            if let Ok(value) = HeaderValue::from_str(&lsn.to_string()) {
                response.headers_mut().insert(READ_AFTER_LSN, value);
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(
            %error,
            "could not read the primary's WAL position: this write's response carries no {READ_AFTER_LSN}"
        ),
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        http::{Request, StatusCode},
        routing::post,
    };
    use sea_orm::DatabaseConnection;
    use tower::ServiceExt;

    use super::*;
    use crate::ApiSettings;

    async fn read_after(header: Option<&str>) -> Result<ReadAfter, ApiError> {
        let mut request = Request::get("/");
        if let Some(value) = header {
            request = request.header(READ_AFTER_LSN, value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        ReadAfter::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn a_read_without_the_header_names_no_lsn() {
        assert!(read_after(None).await.unwrap().0.is_none());
    }

    #[tokio::test]
    async fn the_header_is_read_as_an_lsn() {
        let lsn = read_after(Some("16/B374D848")).await.unwrap().0.unwrap();
        assert_eq!(lsn.to_string(), "16/B374D848");
    }

    #[tokio::test]
    async fn a_header_that_is_not_an_lsn_is_a_validation_failure() {
        for bad in ["", "yesterday", "1/2/3", "0/xyz"] {
            let error = read_after(Some(bad)).await.unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidInput(detail) if detail.contains(READ_AFTER_LSN)),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_replica_a_write_carries_no_lsn_header() {
        // A disconnected pool: asking it for an LSN would fail, so none is asked for.
        let state = AppState::new(DatabaseConnection::default(), ApiSettings::default());
        let app = Router::new()
            .route("/write", post(|| async { StatusCode::CREATED }))
            .layer(axum::middleware::from_fn_with_state(state.clone(), stamp))
            .with_state(state);
        let response = app
            .oneshot(Request::post("/write").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.headers().get(READ_AFTER_LSN).is_none());
    }
}
