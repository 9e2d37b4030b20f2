//! The middleware every request passes through, outermost first:
//!
//! 1. `x-request-id`: the request's own, when it sent one, or a new UUID; copied onto the response.
//! 2. Tracing: a `request` span carrying the request id, method and path, and the caller's
//!    `user_id` once [`crate::auth::AuthUser`] has verified their token, so every log line of
//!    the request names them; one INFO line per response with its status and latency. The span
//!    also goes into the request's extensions ([`RequestSpan`]), for the extractor to record
//!    into: by then the current span is a narrower one inside it (the SQL scope's).
//! 3. The SQL scope ([`crate::sql_scope`]): the request's statements are captured and counted into
//!    `x-query-count`, `server-timing` and, on an N+1, `x-n-plus-one`. Inside the tracing span,
//!    so the detector's warnings name the request id; outside the layers below, so a panic or a
//!    timeout is answered with the headers too.
//! 4. Panics become a 500 problem, logged like any unexpected error.
//! 5. The request timeout: a request still running after it is dropped — and with it any open
//!    transaction, which rolls back — and answered with a 503 problem. tower's `Timeout` is used
//!    rather than tower-http's, whose answer is a bare status without our problem body.
//! 6. The body limit, as axum's `DefaultBodyLimit`, which the body extractors enforce: an
//!    oversized body is then rejected by [`crate::extract::Json`] as a 413 problem. (tower-http's
//!    `RequestBodyLimitLayer` answers a declared oversized body itself, with a plain-text 413.)

use std::any::Any;

use axum::{
    BoxError, Router,
    body::Body,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    http::{Request, Response},
    middleware::{Next, from_fn},
    response::IntoResponse,
};
use tower::{ServiceBuilder, timeout::TimeoutLayer};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span};

use crate::{ApiError, ApiSettings, MAX_BODY_BYTES, sql_scope};

/// The header that carries the request id, both ways.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// `router` inside every layer of the module documentation.
pub(crate) fn wrap(router: Router, settings: &ApiSettings) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(DefaultOnResponse::new().level(Level::INFO))
                    // Failures are logged by `ApiError`, once, with their cause.
                    .on_failure(()),
            )
            .layer(from_fn(keep_request_span))
            .layer(from_fn(sql_scope::record))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(HandleErrorLayer::new(middleware_error))
            .layer(TimeoutLayer::new(settings.request_timeout))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

fn request_span(request: &Request<Body>) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        // Recorded by `AuthUser` once the token is verified; absent on anonymous requests.
        user_id = tracing::field::Empty,
    )
}

/// The request's `request` span, kept in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpan(pub(crate) Span);

/// Runs inside the request span: stores it in the request for the layers and handlers below.
async fn keep_request_span(mut request: Request<Body>, next: Next) -> Response<Body> {
    request
        .extensions_mut()
        .insert(RequestSpan(Span::current()));
    next.run(request).await
}

/// What a failing layer below the error handler reports: in practice, only the timeout.
async fn middleware_error(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::unexpected("serving the request", error)
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    };
    ApiError::unexpected("a handler panicked", message).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{http::StatusCode, routing::get};
    use tower::ServiceExt;

    use super::*;
    use crate::{ErrorCode, Problem};

    fn app_with(router: Router, timeout: Duration) -> Router {
        wrap(
            router,
            &ApiSettings {
                request_timeout: timeout,
            },
        )
    }

    async fn call(app: Router, request: Request<Body>) -> (Response<Body>, Option<Problem>) {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            Response::from_parts(parts, Body::empty()),
            serde_json::from_slice(&body).ok(),
        )
    }

    // Paused time: the clock jumps to the timeout instead of waiting for it.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_outlives_the_timeout_is_a_503_problem() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "finished"
            }),
        );
        let app = app_with(slow, Duration::from_secs(30));
        let (response, problem) =
            call(app, Request::get("/slow").body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.unwrap().code, ErrorCode::ServiceUnavailable);
        assert!(response.headers().contains_key("retry-after"));
        assert!(response.headers().contains_key(REQUEST_ID));
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_that_keeps_its_message_to_itself() {
        let panicking = Router::new().route(
            "/panic",
            get(|| async {
                if true {
                    panic!("secret internals");
                }
                "unreachable"
            }),
        );
        let app = app_with(panicking, Duration::from_secs(30));
        let (response, problem) =
            call(app, Request::get("/panic").body(Body::empty()).unwrap()).await;
        let problem = problem.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(problem.code, ErrorCode::Internal);
        assert!(!problem.detail.contains("secret"), "{problem:?}");
    }

    #[tokio::test]
    async fn a_request_id_sent_by_the_client_is_echoed() {
        let app = app_with(
            Router::new().route("/", get(|| async { "ok" })),
            Duration::from_secs(30),
        );
        let request = Request::get("/")
            .header(REQUEST_ID, "client-chosen-id")
            .body(Body::empty())
            .unwrap();
        let (response, _) = call(app, request).await;
        assert_eq!(response.headers()[REQUEST_ID], "client-chosen-id");
    }
}
