//! Row counts on PostgreSQL and MySQL reach their scope through the task that awaits the
//! statement, with no tracing span per scope. This test binary never connects to SQLite, the
//! one backend whose statements run on a worker thread and need the span, so every scope here
//! must do without one. It reads the servers named by `TEST_POSTGRES_URL` and `TEST_MYSQL_URL`
//! and creates nothing on them.

// In a test, a broken expectation is a failed test: expect says so most directly.
#![allow(clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, Statement};
use sql_observe::{self as observe, ObserveConfig, Scope};
use tracing::{instrument::WithSubscriber, span};
use tracing_subscriber::{Layer, layer::Context, prelude::*};

/// Counts the spans made for scopes (their target is `sql_observe::scope`).
#[derive(Clone, Default)]
struct ScopeSpans(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for ScopeSpans {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        if attrs.metadata().target() == "sql_observe::scope" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn rows_of_a_three_row_select_in_a_scope(url: &str) -> (Option<u64>, usize) {
    let mut options = ConnectOptions::new(url);
    observe::count_rows(&mut options);
    let mut conn = Database::connect(options).await.expect("connects");
    observe::install(&mut conn, ObserveConfig::default());
    let scope_spans = ScopeSpans::default();
    let subscriber = tracing_subscriber::registry()
        .with(observe::row_count_layer())
        .with(scope_spans.clone());

    let sql = "SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3";
    let (rows, report) = observe::scope(
        Scope::test("three rows"),
        conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)),
    )
    .with_subscriber(subscriber)
    .await;
    assert_eq!(rows.expect("the select runs").len(), 3);
    assert_eq!(report.statement_count(), 1, "{:#?}", report.statements);
    conn.close().await.expect("closes");
    (
        report.statements[0].rows,
        scope_spans.0.load(Ordering::Relaxed),
    )
}

/// Runs the three-row SELECT on the server `variable` names, if it names one, and asserts its
/// row count arrived with no span made for its scope.
async fn counts_without_a_span_on(variable: &str) {
    let Some(url) = std::env::var(variable)
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        println!("skipped: set {variable} to run this test");
        return;
    };
    let (rows, scope_spans) = rows_of_a_three_row_select_in_a_scope(&url).await;
    assert_eq!(rows, Some(3));
    assert_eq!(scope_spans, 0, "no span is made for a scope without SQLite");
}

#[tokio::test]
async fn on_postgresql_a_scope_gets_its_row_counts_without_a_span() {
    counts_without_a_span_on("TEST_POSTGRES_URL").await;
}

#[tokio::test]
async fn on_mysql_a_scope_gets_its_row_counts_without_a_span() {
    counts_without_a_span_on("TEST_MYSQL_URL").await;
}
