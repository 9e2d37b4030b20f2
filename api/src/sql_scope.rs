//! Each request is one SQL scope of the capture layer ([`sql_observe`]): every statement it
//! runs is counted, and the response says so.
//!
//! * `x-query-count`: how many statements serving the request sent (`0` for `/healthz`);
//! * `server-timing`: the time they spent in the database, `db;dur=1.234;desc="3 statements"`,
//!   which browsers' developer tools show beside the request;
//! * `x-n-plus-one`: only when the request ran an N+1 pattern, one line naming the repeated
//!   statement, its count and the function that issued it. The detector has already logged a
//!   WARN about it inside the request's span, so the log line carries the request id.
//!
//! The scope is named `<METHOD> <route>` with the route as declared (`GET /orders/{id}`), so
//! every request to one endpoint is logged under one name; a request no route matches is
//! `<METHOD> (no route)`. The layer sits outside the timeout and the panic handler, so a 503 or
//! a 500 carries the headers too, counting what ran before the request was cut short.
//!
//! The statements are those of the connection's capture, installed with [`sql_observe::install`]
//! and [`observe_config`] before the connection went into [`crate::AppState`]; without it, every
//! count is 0.

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use sql_observe::{self as observe, ObserveConfig, SafelistEntry, Scope, ScopeReport};

/// The number of statements the request sent.
pub const QUERY_COUNT: HeaderName = HeaderName::from_static("x-query-count");
/// The database time, in the `Server-Timing` format (W3C).
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// The worst N+1 pattern the request ran, when it ran one.
pub const N_PLUS_ONE: HeaderName = HeaderName::from_static("x-n-plus-one");

/// The capture configuration Mercado runs under: statements logged on `mercado::sql`, call
/// sites named in Mercado's crates, API token hashes never shown, and the statements the
/// service repeats on purpose ([`service::ops::INTENDED_REPEATS`]) safelisted with their
/// reasons. The binary, the benchmarks and the end-to-end tests install exactly this.
pub fn observe_config() -> ObserveConfig {
    let config = ObserveConfig::default()
        .log_to(sql_observe::tracing_log!("mercado::sql"))
        .with_secret_column("token_hash");
    let config = ["service", "api", "mercado", "mercado_lab"]
        .into_iter()
        .fold(config, ObserveConfig::with_own_crate);
    service::ops::INTENDED_REPEATS
        .iter()
        .fold(config, |config, (fingerprint, reason)| {
            config.safelist(SafelistEntry::new(*fingerprint, *reason))
        })
}

/// The middleware: runs the rest of the stack as one request scope and reports on the response.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let scope = Scope::request(scope_name(&request));
    let (mut response, report) = observe::scope(scope, next.run(request)).await;
    add_headers(&mut response, &report);
    response
}

/// `GET /orders/{id}`: the method and the route's declared path, never the ids in it.
fn scope_name(request: &Request) -> String {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    format!("{} {route}", request.method())
}

fn add_headers(response: &mut Response, report: &ScopeReport) {
    let headers = response.headers_mut();
    headers.insert(QUERY_COUNT, HeaderValue::from(report.statement_count()));
    // Both are ASCII by construction (the summary replaces anything else with `?`); a value
    // that still could not be a header is left out rather than failing the response.
    if let Ok(timing) = HeaderValue::from_str(&report.server_timing()) {
        headers.insert(SERVER_TIMING, timing);
    }
    if let Some(summary) = report.summary()
        && let Ok(summary) = HeaderValue::from_str(&summary)
    {
        headers.insert(N_PLUS_ONE, summary);
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_without_statements_reports_zero_and_no_n_plus_one() {
        let app = Router::new()
            .route("/things/{id}", get(|| async { "ok" }))
            .layer(from_fn(record));

        let response = app
            .oneshot(Request::get("/things/7").body(Body::empty()).unwrap())
            .await
            .unwrap();

        let headers = response.headers();
        assert_eq!(headers[QUERY_COUNT], "0");
        assert_eq!(headers[SERVER_TIMING], "db;dur=0.000;desc=\"0 statements\"");
        assert!(!headers.contains_key(N_PLUS_ONE));
    }

    #[tokio::test]
    async fn the_scope_is_named_by_the_route_not_the_path() {
        let app = Router::new()
            .route(
                "/things/{id}",
                get(|request: Request| async move { scope_name(&request) }),
            )
            .fallback(|request: Request| async move { scope_name(&request) });

        for (uri, expected) in [
            ("/things/7", "GET /things/{id}"),
            ("/nothing/here", "GET (no route)"),
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(body, expected, "{uri}");
        }
    }
}
