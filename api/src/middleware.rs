//! The middleware every request passes through, outermost first:
//!
//! 1. `x-request-id`: the request's own, when it sent one, or a new UUID; copied onto the response.
//! 2. Tracing: a `request` span carrying the request id, method and path, and the caller's
//!    `user_id` once [`crate::auth::AuthUser`] has verified their token, so every log line of
//!    the request names them; one INFO line per response with its status and latency. The span
//!    also goes into the request's extensions ([`RequestSpan`]), for the extractor to record
//!    into: by then the current span is a narrower one inside it (the SQL scope's).
//! 3. The SQL scope ([`crate::sql_scope`]): the request's statements are captured and counted into
//!    `x-query-count`, `server-timing` and, on an N+1, `x-n-plus-one` (as `SQL_HEADERS` says),
//!    and recorded into the SQL inspector when it is on. Inside the tracing span,
//!    so the detector's warnings name the request id; outside the layers below, so a panic or a
//!    timeout is answered with the headers too.
//! 4. Panics become a 500 problem, logged like any unexpected error.
//! 5. Load shedding: at most `max_concurrent_requests` requests are served at once, counted by
//!    one semaphore across every route (tower's `GlobalConcurrencyLimitLayer`); one more is not
//!    queued but answered at once with a 503 problem and `Retry-After` (tower's `LoadShedLayer`,
//!    which turns "not ready" into an error). `/healthz` is not counted: a liveness probe must
//!    not fail because the server is busy, or an orchestrator restarts a healthy process.
//! 6. The database guard ([`service::health`]): while the database is known to be down, a
//!    request that needs it is answered 503 with `Retry-After` at once; every other request runs
//!    inside the guard's task-local scope, so that the service's retries report to it.
//! 7. The request timeout: a request still running after it is dropped — and with it any open
//!    transaction, which rolls back — and answered with a 503 problem. tower's `Timeout` is used
//!    rather than tower-http's, whose answer is a bare status without our problem body.
//! 8. The body limit, as axum's `DefaultBodyLimit`, which the body extractors enforce: an
//!    oversized body is then rejected by [`crate::extract::Json`] as a 413 problem. (tower-http's
//!    `RequestBodyLimitLayer` answers a declared oversized body itself, with a plain-text 413.)

use std::any::Any;

use axum::{
    BoxError, Router,
    body::Body,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    extract::State,
    http::{Request, Response},
    middleware::{Next, from_fn, from_fn_with_state},
    response::IntoResponse,
};
use service::health::DatabaseHealth;
use tower::{
    ServiceBuilder, limit::GlobalConcurrencyLimitLayer, load_shed::LoadShedLayer,
    timeout::TimeoutLayer,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span};

use crate::{ApiError, ApiSettings, MAX_BODY_BYTES, sql_scope};

/// The header that carries the request id, both ways.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The paths that never touch the database, or deal with its absence themselves: the guard
/// lets them through while the database is down.
const WITHOUT_DATABASE: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];

/// The path that is never shed: liveness.
const LIVENESS: &str = "/healthz";

/// `router` inside every layer of the module documentation.
pub(crate) fn wrap(router: Router, settings: &ApiSettings, health: DatabaseHealth) -> Router {
    let limited = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(middleware_error))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            settings.max_concurrent_requests.max(1),
        ))
        .service(router.clone());
    // `route_service` takes no `Router` (it asks for `nest`, which would strip the path), so the
    // unlimited one is passed behind an identity `map_request`.
    // It also drops the outer router's `MatchedPath`, which the inner router would otherwise
    // extend as if nested (`/healthz/healthz`).
    let unlimited = ServiceBuilder::new()
        .map_request(|mut request: Request<Body>| {
            request
                .extensions_mut()
                .remove::<axum::extract::MatchedPath>();
            request
        })
        .service(router);
    let router = Router::new()
        .route_service(LIVENESS, unlimited)
        .fallback_service(limited);
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
            .layer(from_fn_with_state(
                sql_scope::Recording {
                    headers: settings.sql_headers,
                    inspector: settings.inspector.clone(),
                },
                sql_scope::record,
            ))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(from_fn_with_state(health, database_guard))
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

/// Answers at once while the database is known to be down; runs the request inside the guard's
/// scope otherwise.
async fn database_guard(
    State(health): State<DatabaseHealth>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    if health.is_down() && !WITHOUT_DATABASE.contains(&request.uri().path()) {
        return ApiError::DatabaseDown.into_response();
    }
    service::health::watching(health, next.run(request)).await
}

/// What a failing layer below an error handler reports: the timeout, or the load shedder.
async fn middleware_error(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
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
                ..ApiSettings::default()
            },
            DatabaseHealth::disabled(),
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
    async fn a_request_beyond_the_concurrency_limit_is_shed_with_a_503_and_liveness_is_not() {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let hold = release.clone();
        let router = Router::new()
            .route(
                "/hold",
                get(move || {
                    let hold = hold.clone();
                    async move {
                        hold.notified().await;
                        "released"
                    }
                }),
            )
            .route("/other", get(|| async { "ok" }))
            .route(LIVENESS, get(|| async { "alive" }));
        let app = wrap(
            router,
            &ApiSettings {
                max_concurrent_requests: 1,
                ..ApiSettings::default()
            },
            DatabaseHealth::disabled(),
        );
        let held = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/hold").body(Body::empty()).unwrap()),
        );
        // Once the held request has taken the only permit, the next one is shed.
        let (shed, problem) = loop {
            tokio::task::yield_now().await;
            let (response, problem) = call(
                app.clone(),
                Request::get("/other").body(Body::empty()).unwrap(),
            )
            .await;
            if response.status() != StatusCode::OK {
                break (response, problem);
            }
        };
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.unwrap().code, ErrorCode::ServiceUnavailable);
        assert!(shed.headers().contains_key("retry-after"));
        assert!(shed.headers().contains_key(REQUEST_ID));
        let (alive, _) = call(
            app.clone(),
            Request::get(LIVENESS).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(alive.status(), StatusCode::OK);
        release.notify_one();
        assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
        let (after, _) = call(app, Request::get("/other").body(Body::empty()).unwrap()).await;
        assert_eq!(after.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn while_the_database_is_down_requests_fail_fast_but_liveness_answers() {
        let health = DatabaseHealth::new(
            Duration::ZERO,
            Some(std::sync::Arc::new(|| {
                Box::pin(async { Err("connection refused".to_owned()) })
            })),
        );
        health.report_trouble();
        while !health.is_down() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let router = Router::new()
            .route("/orders", get(|| async { "placed" }))
            .route(LIVENESS, get(|| async { "alive" }));
        let app = wrap(router, &ApiSettings::default(), health);
        let (refused, problem) = call(
            app.clone(),
            Request::get("/orders").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.unwrap().code, ErrorCode::ServiceUnavailable);
        assert!(refused.headers().contains_key("retry-after"));
        let (alive, _) = call(app, Request::get(LIVENESS).body(Body::empty()).unwrap()).await;
        assert_eq!(alive.status(), StatusCode::OK);
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
