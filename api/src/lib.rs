//! Mercado's HTTP API: an axum router over the service layer.
//!
//! [`app`] builds the whole application — routes, the OpenAPI document at `/openapi.json`,
//! fallbacks for unknown routes and methods, and the middleware (request ids, tracing, a request
//! timeout, a body limit) — and [`serve`] runs it until a shutdown future completes. The binary
//! and the end-to-end tests start the same application, through the binary's library
//! (`mercado::startup::Application`); tests bind it to port 0.
//!
//! Every error leaves through one type, [`ApiError`], as `application/problem+json`; handlers
//! take their input through this crate's extractors ([`extract::Json`], [`extract::Path`],
//! [`extract::Query`], [`auth::AuthUser`]), whose rejections are `ApiError`s too. The api never
//! issues SQL and never sees an entity: it calls the `service` crate and speaks its domain types.

pub mod auth;
pub mod error;
pub mod extract;
mod inspector;
mod middleware;
pub mod openapi;
pub mod read_after;
mod routes;
pub(crate) mod schemas;
pub mod sql_scope;

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{Extension, Router};
use sea_orm::DatabaseConnection;
use service::health::DatabaseHealth;
use service::pools::ReadRouter;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ErrorCode, Problem};
pub use sql_inspector::Inspector;
pub use sql_scope::SqlHeaders;

/// The largest request body accepted, in bytes (1 MiB); a larger one is answered with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the HTTP layer behaves, independently of the database.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// A request still running after this long is abandoned and answered with 503; its
    /// transaction, if any, is dropped and so rolled back.
    pub request_timeout: Duration,
    /// The most requests served at once (`/healthz` aside); one more is shed at once with 503
    /// and `Retry-After` rather than queued. Below it, requests that need the database queue
    /// for a connection, each for at most the pool's acquire timeout. The default, 256, is far
    /// above what a pool of 10 connections serves at once, and far below what exhausts memory.
    pub max_concurrent_requests: usize,
    /// Which SQL headers responses carry (`SQL_HEADERS`); the log is unaffected.
    pub sql_headers: SqlHeaders,
    /// The SQL inspector to record every request into and to serve at `/_inspector`, when it
    /// is on (`--inspect`); off, those routes are 404.
    pub inspector: Option<Inspector>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            sql_headers: SqlHeaders::default(),
            inspector: None,
        }
    }
}

/// What every handler can reach: the pool, the router that picks where a read runs, the
/// database health guard, and the settings the application was built with.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The primary: every write, and every read that must not see a replica.
    pub db: DatabaseConnection,
    /// Whether the database is reachable; while it is known not to be, requests fail fast.
    pub health: DatabaseHealth,
    /// Where read-only operations run: the primary, or a replica (`DATABASE_REPLICA_URL`).
    pub reads: ReadRouter,
    pub settings: Arc<ApiSettings>,
}

impl AppState {
    /// The state over `db`: every read on it, as without a replica, and no health guard (the
    /// database is never taken for down).
    pub fn new(db: DatabaseConnection, settings: ApiSettings) -> Self {
        Self {
            reads: ReadRouter::primary_only(db.clone()),
            db,
            health: DatabaseHealth::disabled(),
            settings: Arc::new(settings),
        }
    }

    /// The same state, guarded by `health` ([`DatabaseHealth::watch`] of the pool's settings).
    pub fn with_health(self, health: DatabaseHealth) -> Self {
        Self { health, ..self }
    }

    /// `self`, with reads routed by `reads` (built over the same primary).
    pub fn with_reads(self, reads: ReadRouter) -> Self {
        Self { reads, ..self }
    }
}

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    app_with_routes(state, OpenApiRouter::new())
}

/// [`app`] with `extra` routes mounted beside the API's own, behind the same fallbacks and
/// middleware and listed in the same document. The end-to-end tests mount probes with it (a
/// route that echoes a JSON body, one that never finishes) to drive the extractors and the
/// timeout through real HTTP.
///
/// The inspector's routes are always in the document; they are its own when
/// [`ApiSettings::inspector`] is set, and 404 problems otherwise.
pub fn app_with_routes(state: AppState, extra: OpenApiRouter<AppState>) -> Router {
    let (router, document) = routes::all().merge(extra).split_for_parts();
    let (inspector_off, inspector_document) = inspector::documented().split_for_parts();
    let mut document = document;
    document.merge(inspector_document);
    let document = Arc::new(openapi::to_json(&openapi::finish(document)));
    let router = match &state.settings.inspector {
        Some(inspector) => router.merge(inspector.router()),
        None => router.merge(inspector_off),
    };
    let router = router
        .route_layer(axum::middleware::from_fn(sql_scope::mark_route))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_after::stamp,
        ))
        .layer(Extension(document))
        // Both fallbacks must come after every route: the 405 one is attached to the routes
        // registered so far.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::route_not_found)
        .with_state(state.clone());
    middleware::wrap(router, &state.settings, state.health.clone())
}

/// The OpenAPI document of every route [`app`] serves; `/openapi.json` serves it rendered by
/// [`openapi::to_json`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = routes::all().split_for_parts();
    document.merge(inspector::documented().split_for_parts().1);
    openapi::finish(document)
}

/// Serves `app` (built by [`app`] or [`app_with_routes`]) on `listener` until `shutdown`
/// completes, then stops accepting connections and waits for the requests in flight (each
/// bounded by the request timeout) before returning.
pub async fn serve<F>(listener: TcpListener, app: Router, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM: the shutdown future for [`serve`].
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C; only SIGTERM stops the server");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
    tracing::info!("shutting down: no new connections; finishing the requests in flight");
}
