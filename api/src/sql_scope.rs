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
//!
//! What the responses say is [`SqlHeaders`]' choice (`SQL_HEADERS`): all three headers
//! (`full`, the default), only the count and the timing (`count`), or none (`off`), for a
//! server whose clients should learn nothing of its code. The detector's WARN is logged either
//! way, and when the inspector is on ([`sql_inspector`], `--inspect`) every request but the
//! inspector's own is recorded into it, whatever the headers say.

use std::{fmt, str::FromStr, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use sql_inspector::{Inspector, RequestMeta};
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

/// Which of the SQL headers responses carry (`SQL_HEADERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqlHeaders {
    /// `x-query-count`, `server-timing` and, on an N+1, `x-n-plus-one` (with the repeated
    /// statement and the call site's source path): for development, the default.
    #[default]
    Full,
    /// `x-query-count` and `server-timing` only: nothing of the code's shape.
    Count,
    /// None of the three.
    Off,
}

impl SqlHeaders {
    pub const ALL: [SqlHeaders; 3] = [SqlHeaders::Full, SqlHeaders::Count, SqlHeaders::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            SqlHeaders::Full => "full",
            SqlHeaders::Count => "count",
            SqlHeaders::Off => "off",
        }
    }
}

impl fmt::Display for SqlHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SqlHeaders {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SqlHeaders::ALL
            .into_iter()
            .find(|headers| headers.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not one of full, count, off"))
    }
}

/// What the recording middleware needs: which headers to send, and the inspector to record
/// into, when it is on.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub headers: SqlHeaders,
    pub inspector: Option<Inspector>,
}

/// The route a request matched, as declared, put on its response by the router (the
/// middleware sits outside the router that matches it, where `MatchedPath` is not yet known).
#[derive(Debug, Clone)]
pub(crate) struct MatchedRoute(pub(crate) String);

/// Copies the matched route onto the response, for [`record`].
pub(crate) async fn mark_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| MatchedRoute(path.as_str().to_owned()));
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// The middleware: runs the rest of the stack as one request scope, reports on the response as
/// `recording.headers` says and records the request into the inspector, when there is one.
pub(crate) async fn record(
    State(recording): State<Recording>,
    request: Request,
    next: Next,
) -> Response {
    let scope = Scope::request(scope_name(&request));
    // The path only: a query string is never kept.
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let (mut response, report) = observe::scope(scope, next.run(request)).await;
    add_headers(&mut response, &report, recording.headers);
    if let Some(inspector) = &recording.inspector
        && !sql_inspector::is_inspector_path(&path)
    {
        let meta = RequestMeta {
            method,
            path,
            route: response
                .extensions()
                .get::<MatchedRoute>()
                .map(|route| route.0.clone()),
            status: response.status().as_u16(),
            started_at,
            duration: started.elapsed(),
        };
        inspector.record(meta, &report);
    }
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

fn add_headers(response: &mut Response, report: &ScopeReport, which: SqlHeaders) {
    if which == SqlHeaders::Off {
        return;
    }
    let headers = response.headers_mut();
    headers.insert(QUERY_COUNT, HeaderValue::from(report.statement_count()));
    // Both are ASCII by construction (the summary replaces anything else with `?`); a value
    // that still could not be a header is left out rather than failing the response.
    if let Ok(timing) = HeaderValue::from_str(&report.server_timing()) {
        headers.insert(SERVER_TIMING, timing);
    }
    if which == SqlHeaders::Full
        && let Some(summary) = report.summary()
        && let Ok(summary) = HeaderValue::from_str(&summary)
    {
        headers.insert(N_PLUS_ONE, summary);
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn_with_state, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_without_statements_reports_zero_and_no_n_plus_one() {
        let app = Router::new()
            .route("/things/{id}", get(|| async { "ok" }))
            .layer(from_fn_with_state(Recording::default(), record));

        let response = app
            .oneshot(Request::get("/things/7").body(Body::empty()).unwrap())
            .await
            .unwrap();

        let headers = response.headers();
        assert_eq!(headers[QUERY_COUNT], "0");
        assert_eq!(headers[SERVER_TIMING], "db;dur=0.000;desc=\"0 statements\"");
        assert!(!headers.contains_key(N_PLUS_ONE));
    }

    #[test]
    fn sql_headers_parse_from_their_names_only() {
        for headers in SqlHeaders::ALL {
            assert_eq!(headers.to_string().parse::<SqlHeaders>(), Ok(headers));
        }
        assert!("FULL".parse::<SqlHeaders>().is_err());
        assert!("none".parse::<SqlHeaders>().is_err());
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
