//! `SQL_HEADERS=off` takes the SQL headers off the responses, not the N+1 warning off the log:
//! the application driven in-process under a test subscriber (see `tests/http_logs.rs` for why
//! in-process, and why on PostgreSQL only).

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::{ApiError, ApiSettings, AppState, SqlHeaders};
use axum::{body::Body, extract::State, http::Request, routing::get};
use mercado_testkit::{Backend, TestDb, log::CapturedLog};
use serde_json::{Value, json};
use sql_inspector::{Inspector, InspectorConfig};
use tower::ServiceExt;
use tracing::instrument::WithSubscriber;
use utoipa_axum::router::OpenApiRouter;

/// Reads users 1 to 3 one by one: an N+1 on purpose.
async fn users_one_by_one(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    for id in 1..=3 {
        match service::ops::users::get_user(&state.db, id).await {
            Ok(_) | Err(service::ServiceError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(axum::Json(json!({})))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
)]
async fn with_sql_headers_off_the_n_plus_one_is_still_logged_and_recorded() {
    mercado_testkit::run(Backend::Postgres, still_logged).await;
}

async fn still_logged(db: TestDb) -> anyhow::Result<()> {
    let inspector = Inspector::new(InspectorConfig::default());
    let settings = ApiSettings {
        sql_headers: SqlHeaders::Off,
        inspector: Some(inspector.clone()),
        ..ApiSettings::default()
    };
    let probes = OpenApiRouter::new().route("/probe/n-plus-one", get(users_one_by_one));
    // Mercado's capture, as the binary installs it: statements logged on `mercado::sql`.
    let mut conn = db.conn.clone();
    sql_observe::install(&mut conn, api::sql_scope::observe_config());
    let app = api::app_with_routes(AppState::new(conn, settings), probes);
    let log = CapturedLog::default();

    let response = app
        .oneshot(Request::get("/probe/n-plus-one").body(Body::empty())?)
        .with_subscriber(log.subscriber_like_the_binary("info"))
        .await?;

    assert_eq!(response.status(), 200);
    for header in ["x-query-count", "server-timing", "x-n-plus-one"] {
        assert!(!response.headers().contains_key(header), "{header} is sent");
    }
    let text = log.text();
    let warning = text
        .lines()
        .find(|line| line.contains("WARN") && line.contains("N+1"))
        .unwrap_or_else(|| panic!("no N+1 warning in:\n{text}"));
    assert!(warning.contains("service::repo::users::find"), "{warning}");
    let recorded = inspector.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].trace.n_plus_one_count(), 1);
    Ok(())
}
