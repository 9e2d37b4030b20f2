//! The SQL inspector's routes in the OpenAPI document, and what they answer when it is off.
//!
//! The inspector itself is the `sql-inspector` crate: with `--inspect`, [`crate::app`] mounts its
//! router. Its routes are documented here, under the `inspector` tag, whether it is on or not,
//! with the 404 `not_found` they answer while it is off (the default): the handlers below are
//! what a server without `--inspect` mounts at those paths, so that they are 404 problems, and a
//! method they do not take is 405, exactly as the document says. The bodies are described, not
//! given a schema: the inspector's types belong to a crate that knows nothing of utoipa.

use axum::http::Uri;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiError, AppState};

/// The routes as a server with the inspector off mounts them, with their documentation.
pub(crate) fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_page))
        .routes(routes!(request_page))
        .routes(routes!(requests))
        .routes(routes!(request))
        .routes(routes!(events))
        .routes(routes!(explain))
}

fn off(uri: &Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().to_owned(),
    }
}

/// The list of recent requests, as a page.
///
/// The most recent requests (at most 200), newest first: method, path (without its query
/// string), status, time, statement count, database time and an N+1 badge. New requests appear
/// without a reload (see `/_inspector/events`). Development only: it shows the SQL and the bound
/// values of every request (secret columns as `'***'`).
#[utoipa::path(
    get,
    path = "/_inspector",
    tag = "inspector",
    responses(
        (status = 200, description = "The page (HTML).", body = String, content_type = "text/html"),
        (status = 404, description = "`not_found`: the inspector is off (the default; `--inspect` turns it on).", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn list_page(uri: Uri) -> ApiError {
    off(&uri)
}

/// One recorded request, as a page.
///
/// Its statements in order (SQL formatted and highlighted, values, duration, rows, fingerprint
/// group), a waterfall, and the N+1 and duplicate findings with count, call site and fix.
#[utoipa::path(
    get,
    path = "/_inspector/r/{id}",
    tag = "inspector",
    params(("id" = u64, Path, description = "The request's id, from the list.")),
    responses(
        (status = 200, description = "The page (HTML).", body = String, content_type = "text/html"),
        (status = 404, description = "`not_found`: the inspector is off, or keeps no request with this id.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn request_page(uri: Uri) -> ApiError {
    off(&uri)
}

/// The recent requests, as JSON.
///
/// `{"requests": [...]}`, newest first, each `{id, method, path, route, status, started_at,
/// duration_us, statement_count, database_time_us, n_plus_one, duplicates}` (`n_plus_one` and
/// `duplicates` count findings).
#[utoipa::path(
    get,
    path = "/_inspector/requests",
    tag = "inspector",
    responses(
        (status = 200, description = "The requests kept.", body = Object, content_type = "application/json"),
        (status = 404, description = "`not_found`: the inspector is off (the default; `--inspect` turns it on).", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn requests(uri: Uri) -> ApiError {
    off(&uri)
}

/// One recorded request, as JSON.
///
/// As in the list, plus `dropped_statements`, `statements` (each `{sequence, sql, params,
/// fingerprint, group, duration_us, rows, failed, retried, offset_us}`, `params` as SQL literals
/// with secret ones `'***'`) and `findings` (each `{kind, fingerprint, count, distinct_values,
/// call_site, called_from, fix}`).
#[utoipa::path(
    get,
    path = "/_inspector/requests/{id}",
    tag = "inspector",
    params(("id" = u64, Path, description = "The request's id, from the list.")),
    responses(
        (status = 200, description = "The request with its statements and findings.", body = Object, content_type = "application/json"),
        (status = 404, description = "`not_found`: the inspector is off, or keeps no request with this id.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn request(uri: Uri) -> ApiError {
    off(&uri)
}

/// New requests, as server-sent events.
///
/// One `request` event per request recorded from the moment of connecting, its data the
/// request's summary as in `/_inspector/requests`.
#[utoipa::path(
    get,
    path = "/_inspector/events",
    tag = "inspector",
    responses(
        (status = 200, description = "An event stream.", body = String, content_type = "text/event-stream"),
        (status = 404, description = "`not_found`: the inspector is off (the default; `--inspect` turns it on).", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn events(uri: Uri) -> ApiError {
    off(&uri)
}

/// The plan of one statement of a recorded request.
///
/// `EXPLAIN` (never `ANALYZE`: the statement is planned, not run) of statement `n`, on
/// PostgreSQL, for a single SELECT only, in a read-only transaction, with the statement's
/// values bound; a redacted value is bound as NULL and listed in `bound_as_null`. Answers
/// `{sql, plan: [line...], bound_as_null: [position...]}`; 422 `validation_failed` for a
/// statement that is not a single SELECT, on another database, or when the plan fails.
#[utoipa::path(
    post,
    path = "/_inspector/requests/{id}/statements/{n}/explain",
    tag = "inspector",
    params(
        ("id" = u64, Path, description = "The request's id."),
        ("n" = u64, Path, description = "The statement's position in the request, from 1."),
    ),
    responses(
        (status = 200, description = "The plan.", body = Object, content_type = "application/json"),
        (status = 404, description = "`not_found`: the inspector is off, or keeps no such request or statement.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn explain(uri: Uri) -> ApiError {
    off(&uri)
}
