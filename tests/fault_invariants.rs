//! The invariants are not vacuous: on a real run's database, each breakage a fault could cause
//! — stock that no order explains, money from nowhere, an acknowledged deposit or order gone —
//! is caught by the same SQL the fault tests use.

use std::time::Duration;

use mercado_faults::invariants::{self, Check};
use mercado_faults::load::{LoadPlan, Write};
use mercado_faults::scenario::{Scenario, Spec};

/// The binary under test, as cargo built it for these tests (`MERCADO_BIN` overrides it).
const MERCADO: &str = env!("CARGO_BIN_EXE_mercado");

fn failing(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mercado_postgres),
    ignore = "the fault suite runs with the PostgreSQL tests: set TEST_POSTGRES_URL"
)]
async fn stock_money_a_deposit_or_an_order_tampered_with_in_the_database_breaks_an_invariant()
-> anyhow::Result<()> {
    let mut spec = Spec::new(MERCADO, "self_test", "tampering", 99);
    spec.clients = 4;
    let s = Scenario::start(spec).await?;
    let mut plan = LoadPlan::new(Duration::from_secs(3));
    plan.clients = 4;
    let records = s.load(plan)?.finish().await?.records;
    let mut db = s.pg.admin().await?;

    let checks = invariants::check(&mut db, &s.fixture, &records, &[]).await?;
    assert!(failing(&checks).is_empty(), "{checks:#?}");

    let product = s.fixture.products[0].id;
    sqlx::query("UPDATE inventory SET quantity = quantity - 1 WHERE product_id = $1")
        .bind(product)
        .execute(&mut db)
        .await?;
    let checks = invariants::check(&mut db, &s.fixture, &records, &[]).await?;
    assert_eq!(
        failing(&checks),
        ["stock sold equals the items of the orders not cancelled"]
    );

    let user = s.fixture.clients[0].id;
    sqlx::query("UPDATE accounts SET balance = balance + 0.01 WHERE user_id = $1")
        .bind(user)
        .execute(&mut db)
        .await?;
    let checks = invariants::check(&mut db, &s.fixture, &records, &[]).await?;
    assert!(
        failing(&checks).contains(
            &"the sum of balances equals the ledger of deposits acknowledged or unanswered"
                .to_owned()
        ),
        "{checks:#?}"
    );
    assert!(
        failing(&checks).contains(&"each balance is its deposits, transfers and orders".to_owned()),
        "{checks:#?}"
    );

    let acked_order = records
        .iter()
        .find_map(|r| match (&r.write, r.acked()) {
            (Some(Write::Order { id: Some(id), .. }), true) => Some(*id),
            _ => None,
        })
        .expect("the load placed an order");
    sqlx::query("DELETE FROM order_items WHERE order_id = $1")
        .bind(acked_order)
        .execute(&mut db)
        .await?;
    sqlx::query("DELETE FROM orders WHERE id = $1")
        .bind(acked_order)
        .execute(&mut db)
        .await?;
    let checks = invariants::check(&mut db, &s.fixture, &records, &[]).await?;
    assert!(
        failing(&checks).contains(&"every acknowledged write is in the database".to_owned()),
        "{checks:#?}"
    );

    let acked_deposit = records
        .iter()
        .find(|r| r.acked() && matches!(r.write, Some(Write::Deposit { .. })))
        .and_then(|r| r.key.clone())
        .expect("the load made a deposit");
    sqlx::query("DELETE FROM deposits WHERE idempotency_key = $1")
        .bind(&acked_deposit)
        .execute(&mut db)
        .await?;
    let checks = invariants::check(&mut db, &s.fixture, &records, &[]).await?;
    let acknowledged = checks
        .iter()
        .find(|c| c.name == "every acknowledged write is in the database")
        .expect("the check is made");
    assert!(
        !acknowledged.passed && acknowledged.detail.contains(&acked_deposit),
        "{acknowledged:#?}"
    );
    Ok(())
}
