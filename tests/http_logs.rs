//! What the log says about a request, under the binary's default filter (`LOG_LEVEL=info`): the
//! request span names the caller once their token is verified, and the span of the operation
//! the handler calls sits inside it with the ids it works on.
//!
//! The application is driven in-process (`tower::ServiceExt::oneshot`) rather than through a
//! served port: a test subscriber is the default of the task it wraps, and the server would
//! answer on tasks of its own.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
};

use api::{ApiSettings, AppState};
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use mercado_testkit::{Backend, TestDb};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};

/// A log sink for a test subscriber: everything written, as text.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// A subscriber built as the binary builds its own (`src/telemetry.rs`) under the default
    /// `LOG_LEVEL=info`: a registry with a text printer, the filter the printer's alone.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        // tracing caches per-callsite interest; while a single dispatcher exists it asks only the
        // registering thread's default, so a callsite first reached by another test (with no
        // subscriber) would stay disabled for ours. A second, never-dropped dispatcher makes it
        // ask every registered one (as `lab/tests/observe.rs` does).
        static SECOND_DISPATCHER: OnceLock<tracing::Dispatch> = OnceLock::new();
        SECOND_DISPATCHER
            .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let sink = self.clone();
        tracing_subscriber::registry()
            .with(sql_observe::row_count_layer())
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || sink.clone())
                    .with_filter(EnvFilter::new("info")),
            )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The one line containing every one of `pieces`.
    fn line_with(&self, pieces: &[&str]) -> String {
        let text = self.text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| pieces.iter().all(|piece| line.contains(piece)))
            .collect();
        assert_eq!(lines.len(), 1, "one line with {pieces:?} in:\n{text}");
        lines[0].to_owned()
    }
}

/// Sends `request` to the application and returns the status and the JSON body, if any.
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post_json(path: &str, token: Option<&str>, body: &Value) -> Request<Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn get_as(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// PostgreSQL only: on SQLite, sqlx runs each connection on a worker thread of its own, which
/// enters the caller's spans; spans of a subscriber scoped to one test (as here) are then
/// dropped on that thread under the global dispatcher, which panics the worker and hangs the
/// test (seen 5 times in 12 runs). The binary has one global subscriber and no such mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
)]
async fn an_authenticated_requests_log_lines_carry_the_callers_id_and_the_operations_ids() {
    mercado_testkit::run(Backend::Postgres, log_lines_carry_the_ids).await;
}

async fn log_lines_carry_the_ids(db: TestDb) -> anyhow::Result<()> {
    let app = api::app(AppState::new(db.conn.clone(), ApiSettings::default()));
    let log = CapturedLog::default();

    let (user_id, statuses) = async {
        let (registered, body) = send(
            &app,
            post_json(
                "/users",
                None,
                &json!({"username": "ann", "email": "ann@example.com"}),
            ),
        )
        .await;
        let user_id = body["user"]["id"].as_i64().expect("a user id");
        let token = body["token"].as_str().expect("a token").to_owned();
        let (me, _) = send(&app, get_as("/me", &token)).await;
        let (strangers_me, _) = send(&app, get_as("/me", "not-a-token")).await;
        let product = json!({"sku": "MUG-1", "name": "Mug", "price": "2.50", "stock": 3});
        let (created, _) = send(&app, post_json("/products", Some(&token), &product)).await;
        (user_id, [registered, me, strangers_me, created])
    }
    .with_subscriber(log.subscriber())
    .await;

    use StatusCode as S;
    assert_eq!(statuses, [S::CREATED, S::OK, S::UNAUTHORIZED, S::CREATED]);
    let caller = format!("user_id={user_id}");
    // The response line of each request, written inside its span.
    let answered = log.line_with(&["finished processing request", "path=/me", "status=200"]);
    assert!(
        answered.contains(&format!("path=/me {caller}}}")),
        "{answered}"
    );
    let refused = log.line_with(&["finished processing request", "path=/me", "status=401"]);
    assert!(
        !refused.contains("user_id="),
        "no caller before a token is verified: {refused}"
    );
    let registered = log.line_with(&["finished processing request", "path=/users"]);
    assert!(!registered.contains("user_id="), "{registered}");
    // An event inside the operation: the request span, then the operation's own.
    let created = log.line_with(&["created a product"]);
    assert!(
        created.contains(&format!(
            "{caller}}}:create_product{{seller_id={user_id} sku=MUG-1}}"
        )),
        "{created}"
    );
    Ok(())
}
