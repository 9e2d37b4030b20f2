//! The fault-injection suite (the `mercado-faults` crate drives it): each fault, one test, on
//! its own throwaway PostgreSQL server (made with `initdb` and `pg_ctl`, removed afterwards) and
//! its own `mercado serve` process — this package's binary, as cargo built it for the tests, or a
//! release build named by `MERCADO_BIN` — under a bounded load, with the invariants checked in
//! the database. The tests take a lock, so they never overlap; they need PostgreSQL's server
//! programs, and run where the PostgreSQL tests run (`TEST_POSTGRES_URL` set at build time).

use std::time::Duration;

use mercado_faults::load::{LoadHandle, LoadPlan};
use mercado_faults::scenario::{APP_NAME, Scenario, Spec, targets};

/// The binary under test, as cargo built it for these tests (`MERCADO_BIN` overrides it).
const MERCADO: &str = env!("CARGO_BIN_EXE_mercado");

/// The load of the tests that inject a fault at moments of their own.
const LOAD: Duration = Duration::from_secs(12);

/// Sleep until the load has run for `at`.
async fn at(load: &LoadHandle, at: Duration) {
    tokio::time::sleep(at.saturating_sub(load.now())).await;
}

/// Lock `inventory` against everything for `how_long`, from an admin connection: every order
/// waits on it (and the statement of each is cancelled if that passes `statement_timeout`).
async fn hold_inventory_lock(s: &Scenario, how_long: Duration) -> anyhow::Result<()> {
    let mut admin = s.pg.admin().await?;
    let mut tx = sqlx::Connection::begin(&mut admin).await?;
    sqlx::query("LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    tokio::time::sleep(how_long).await;
    tx.rollback().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn killing_all_the_apps_backends_three_times_loses_no_acknowledged_write()
-> anyhow::Result<()> {
    let mut spec = Spec::new(
        MERCADO,
        "backend_kills",
        "all the app's backends killed 3×, 3 s apart",
        1,
    );
    spec.zero_failure_targets = true;
    let s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(LOAD);
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(2)).await;
    let start = s.fault_begins(&load);
    let mut killed = Vec::new();
    for round in 0..3u32 {
        at(&load, Duration::from_secs(2 + 3 * u64::from(round))).await;
        killed.push(s.pg.terminate_backends(APP_NAME).await?);
    }
    let window = s.fault_ends(&load, start);
    anyhow::ensure!(
        killed.iter().all(|&n| n > 0),
        "a kill found no backend of mercado: {killed:?}"
    );
    s.recover_and_conclude(plan, load, window).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn stopping_the_server_for_three_seconds_loses_nothing_and_mercado_recovers_by_itself()
-> anyhow::Result<()> {
    let mut spec = Spec::new(
        MERCADO,
        "stop_start",
        "server stopped (-m fast) for 3 s, then started",
        2,
    );
    spec.zero_failure_targets = true;
    let mut s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(LOAD);
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(2)).await;
    let start = s.fault_begins(&load);
    s.pg.stop()?;
    tokio::time::sleep(targets::SHORT_OUTAGE).await;
    s.pg.start().await?;
    let window = s.fault_ends(&load, start);
    s.recover_and_conclude(plan, load, window).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn stopping_the_server_for_longer_than_the_acquire_timeout_loses_nothing_and_no_request_hangs()
-> anyhow::Result<()> {
    // Longer than Mercado's outage bound (its acquire timeout, 5 s): requests sent in the first
    // 5 s wait for a connection and fail; once fresh connections have failed for 5 s, requests
    // fail fast with 503 until the server is back. How long they wait is the figure to watch.
    let spec = Spec::new(
        MERCADO,
        "long_outage",
        "server stopped (-m fast) for 8 s, then started",
        3,
    );
    let mut s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(Duration::from_secs(15));
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(2)).await;
    let start = s.fault_begins(&load);
    s.pg.stop()?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    s.pg.start().await?;
    let window = s.fault_ends(&load, start);
    s.recover_and_conclude(plan, load, window).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn crashing_the_server_keeps_every_acknowledged_write_and_mercado_recovers_by_itself()
-> anyhow::Result<()> {
    let mut spec = Spec::new(
        MERCADO,
        "crash_restart",
        "server crashed (-m immediate), then started",
        4,
    );
    spec.zero_failure_targets = true;
    let mut s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(LOAD);
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(3)).await;
    let start = s.fault_begins(&load);
    s.pg.crash()?;
    s.pg.start().await?;
    let window = s.fault_ends(&load, start);
    s.recover_and_conclude(plan, load, window).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn statements_held_past_the_statement_timeout_fail_and_change_nothing() -> anyhow::Result<()>
{
    let mut spec = Spec::new(
        MERCADO,
        "statement_timeout",
        "inventory locked 1 s, 3×, past a 200 ms statement_timeout",
        5,
    );
    spec.settings = vec![("DATABASE_STATEMENT_TIMEOUT", "200ms")];
    let s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(LOAD);
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(2)).await;
    let start = s.fault_begins(&load);
    for round in 0..3u64 {
        at(&load, Duration::from_secs(2 + 3 * round)).await;
        let mut admin = s.pg.admin().await?;
        let mut tx = sqlx::Connection::begin(&mut admin).await?;
        sqlx::query("LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.rollback().await?;
    }
    let window = s.fault_ends(&load, start);
    let record = s.recover_and_conclude(plan, load, window).await?;
    anyhow::ensure!(
        record.failures.orders > 0,
        "no order failed while inventory was locked: the fault did not happen"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn twenty_clients_on_two_busy_connections_are_all_answered_within_their_deadline()
-> anyhow::Result<()> {
    let mut spec = Spec::new(
        MERCADO,
        "pool_exhaustion",
        "20 clients on a pool of 2, its connections held by orders blocked 2 s, then 6 s",
        6,
    );
    spec.settings = vec![("DATABASE_MAX_CONNECTIONS", "2")];
    spec.clients = 20;
    let s = Scenario::start(spec).await?;
    let mut plan = LoadPlan::new(Duration::from_secs(15));
    plan.clients = 20;
    let load = s.load(plan)?;
    // Until then, 20 clients on 2 connections is the fault on its own; on two cores it does not
    // exhaust the pool (requests are short), so a lock then holds both connections: the orders
    // that take them wait on it, and every other request waits for a connection — first below
    // the acquire timeout (5 s), then beyond it.
    at(&load, Duration::from_secs(3)).await;
    let start = s.fault_begins(&load);
    hold_inventory_lock(&s, Duration::from_secs(2)).await?;
    at(&load, Duration::from_secs(7)).await;
    hold_inventory_lock(&s, Duration::from_secs(6)).await?;
    let window = s.fault_ends(&load, start);
    s.recover_and_conclude(plan, load, window).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn a_sigkilled_mercado_started_again_has_kept_every_acknowledged_write() -> anyhow::Result<()>
{
    let mut spec = Spec::new(
        MERCADO,
        "mercado_sigkill",
        "Mercado SIGKILLed mid-load, then started",
        7,
    );
    spec.expected_restarts = 1;
    let mut s = Scenario::start(spec).await?;
    let plan = LoadPlan::new(LOAD);
    let load = s.load(plan)?;
    at(&load, Duration::from_secs(3)).await;
    let start = s.fault_begins(&load);
    s.app.sigkill()?;
    // The fault is the kill; the restart is part of recovering from it.
    let window = s.fault_ends(&load, start);
    s.app.restart().await?;
    let record = s.recover_and_conclude(plan, load, window).await?;
    anyhow::ensure!(
        record.failed > 0,
        "no request failed although Mercado was killed under load"
    );
    Ok(())
}
