//! Requests abandoned mid-transaction, end to end on PostgreSQL: one that outlives the request
//! timeout, and one whose client hangs up; and, by contrast, refused requests, which end their
//! transactions themselves and keep their connections. Either way the client is told nothing was done (or
//! is told nothing at all), the statement stops running in the database, and nothing of the
//! order remains.
//!
//! The order is held mid-transaction by a lock the test takes on `inventory` from its own
//! connection; `pg_stat_activity` then shows whether the application's backend still waits on
//! it. Only PostgreSQL can hold a statement like that and show it.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use mercado_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};
use serde_json::{Value, json};
use support::*;
use utoipa_axum::router::OpenApiRouter;

/// How long the database may take to stop a statement whose caller went away: the release
/// ping's timeout plus the server's client check interval, with room to spare on a busy machine.
const STOPS_WITHIN: Duration = Duration::from_secs(10);

/// A seller's product (10 in stock at 2.50) and a buyer with 100.00.
async fn shop(app: &TestApp) -> anyhow::Result<(Caller, i64)> {
    let seller = app.register("seller").await;
    let response = app
        .post_json_as(
            &seller,
            "/products",
            &json!({"sku": "PEN", "name": "Pen", "price": "2.50", "stock": 10}),
        )
        .await;
    let product: Value = json_of(response, StatusCode::CREATED).await?;
    let buyer = app.register_funded("buyer", "100").await;
    let id = product["id"].as_i64().context("a product id")?;
    Ok((buyer, id))
}

async fn lock_inventory(db: &TestDb) -> anyhow::Result<DatabaseTransaction> {
    let txn = db.conn.begin().await?;
    txn.execute_unprepared("LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
        .await?;
    Ok(txn)
}

/// How many of the application's backends wait on a lock now.
async fn app_backends_waiting(lock: &DatabaseTransaction) -> anyhow::Result<i64> {
    // Activity is read from a snapshot kept for the rest of the transaction: drop it first.
    lock.execute_unprepared("SELECT pg_stat_clear_snapshot()")
        .await?;
    let row = lock
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS waiting FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'mercado' \
             AND wait_event_type = 'Lock'",
        ))
        .await?;
    Ok(row
        .map(|row| row.try_get::<i64>("", "waiting"))
        .transpose()?
        .unwrap_or(0))
}

/// Waits until `condition` holds, at most `within`.
async fn eventually(
    lock: &DatabaseTransaction,
    within: Duration,
    what: &str,
    condition: impl Fn(i64) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let waiting = app_backends_waiting(lock).await?;
        if condition(waiting) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: still {waiting} waiting after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing of an order: stock at 10, no order, the buyer's money untouched.
async fn nothing_was_ordered(app: &TestApp, buyer: &Caller, product_id: i64) -> anyhow::Result<()> {
    let product: Value = json_of(
        app.get(&format!("/products/{product_id}")).await,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(product["stock"], 10);
    let orders: Value = json_of(app.get_as(buyer, "/me/orders").await, StatusCode::OK).await?;
    assert_eq!(orders["orders"], json!([]));
    assert_eq!(app.balance_of(buyer).await, "100.00");
    Ok(())
}

async fn an_order_past_the_request_timeout(db: TestDb) -> anyhow::Result<()> {
    let app = TestApp::spawn_with(
        &db,
        |settings| settings.server.request_timeout = Duration::from_secs(1),
        OpenApiRouter::new(),
    )
    .await;
    let (buyer, product_id) = shop(&app).await?;
    let lock = lock_inventory(&db).await?;

    let response = app
        .post_json_as(
            &buyer,
            "/orders",
            &json!({"items": [{"product_id": product_id, "quantity": 3}]}),
        )
        .await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;

    eventually(&lock, STOPS_WITHIN, "the abandoned order's backend", |n| {
        n == 0
    })
    .await?;
    lock.rollback().await?;
    nothing_was_ordered(&app, &buyer, product_id).await
}

async fn an_order_whose_client_hangs_up(db: TestDb) -> anyhow::Result<()> {
    let app = TestApp::spawn(&db).await;
    let (buyer, product_id) = shop(&app).await?;
    let lock = lock_inventory(&db).await?;

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let order = impatient
        .post(app.url("/orders"))
        .bearer_auth(&buyer.token)
        .json(&json!({"items": [{"product_id": product_id, "quantity": 3}]}))
        .send();
    let waiting = async {
        eventually(&lock, STOPS_WITHIN, "the order reaching the lock", |n| {
            n > 0
        })
        .await
    };
    let (sent, reached) = tokio::join!(order, waiting);
    reached?;
    assert!(
        sent.is_err(),
        "the client gave up before any answer: {sent:?}"
    );

    eventually(&lock, STOPS_WITHIN, "the abandoned order's backend", |n| {
        n == 0
    })
    .await?;
    lock.rollback().await?;
    nothing_was_ordered(&app, &buyer, product_id).await
}

/// The process ids of the application's backends, now.
async fn app_backend_pids(db: &TestDb) -> anyhow::Result<Vec<i32>> {
    let rows = db
        .conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'mercado' ORDER BY pid",
        ))
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<i32>("", "pid")?))
        .collect()
}

/// Refusals are ordinary traffic: the operation rolls back explicitly (`db::finish`), so its
/// connection goes back to the pool clean and is kept. Were the transaction merely dropped, the
/// connection would be closed and the next request would open a new backend.
async fn refused_requests_keep_their_connections(db: TestDb) -> anyhow::Result<()> {
    let app = TestApp::spawn(&db).await;
    let (buyer, product_id) = shop(&app).await?;
    let broke = app.register("broke").await;
    app.get_as(&buyer, "/me").await;
    let before = app_backend_pids(&db).await?;

    for _ in 0..3 {
        let too_many = json!({"items": [{"product_id": product_id, "quantity": 11}]});
        let response = app.post_json_as(&buyer, "/orders", &too_many).await;
        expect_problem(response, StatusCode::CONFLICT, "insufficient_stock").await;
        let unaffordable = json!({"items": [{"product_id": product_id, "quantity": 1}]});
        let response = app.post_json_as(&broke, "/orders", &unaffordable).await;
        expect_problem(response, StatusCode::CONFLICT, "insufficient_funds").await;
        let response = app.get_as(&buyer, "/orders/999999").await;
        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let after = app_backend_pids(&db).await?;

    assert!(!before.is_empty(), "the application holds a connection");
    let closed: Vec<_> = before.iter().filter(|pid| !after.contains(pid)).collect();
    assert!(
        closed.is_empty(),
        "backends {closed:?} were closed by refusals (before {before:?}, after {after:?})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
)]
async fn refused_orders_and_reads_of_nothing_keep_their_database_connections() {
    mercado_testkit::run(Backend::Postgres, refused_requests_keep_their_connections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
)]
async fn an_order_past_the_request_timeout_is_a_503_its_statement_stops_and_nothing_remains() {
    mercado_testkit::run(Backend::Postgres, an_order_past_the_request_timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
)]
async fn an_order_whose_client_hangs_up_stops_its_statement_and_leaves_nothing() {
    mercado_testkit::run(Backend::Postgres, an_order_whose_client_hangs_up).await;
}
