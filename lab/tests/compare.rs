//! The ORM and the hand-written SQL of every canonical query return the same rows, on every
//! backend.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use entity::inventory;
use mercado_lab::compare;
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{DbBackend, EntityTrait, TransactionTrait};
use sql_observe::{self as observe, DetectorMode, ObserveConfig};

backend_tests! {
    async fn every_case_returns_identical_results_through_the_orm_and_raw_sql(
        db: TestDb
    ) -> anyhow::Result<()> {
        let mut conn = db.conn.clone();
        observe::install(&mut conn, ObserveConfig::default().with_mode(DetectorMode::Off));
        let inputs = compare::seed_compare_data(&conn).await?;
        let stock_before = inventory::Entity::find_by_id(inputs.product_in_stock).one(&conn).await?;

        let txn = conn.begin().await?;
        let cases = compare::run_cases(&txn, &inputs).await?;
        txn.rollback().await?;

        assert_eq!(cases.len(), 6);
        for case in &cases {
            assert!(case.identical, "{}: {:#}", case.name, case.result);
            assert!(case.raw.statement_count >= 1, "{}", case.name);
            assert!(case.orm.statement_count >= 1, "{}", case.name);
            let non_empty = case.result.as_array().is_none_or(|rows| !rows.is_empty());
            assert!(non_empty, "{} returned no rows: nothing was compared", case.name);
            assert_eq!(case.orm.explain.is_some(), db.db_backend() == DbBackend::Postgres);
        }
        let last_messages = cases[0].result.as_array().map(Vec::len);
        assert_eq!(last_messages, Some(10));
        let search = cases[2].result.as_array().map(Vec::len);
        assert_eq!(search, Some(5), "the products with stock: {:#}", cases[2].result);
        let guarded = &cases[5].result;
        assert_eq!(guarded["affected_when_in_stock"], 1);
        assert_eq!(guarded["affected_when_short"], 0);
        let stock_after = inventory::Entity::find_by_id(inputs.product_in_stock).one(&conn).await?;
        assert_eq!(stock_after, stock_before, "every run rolls its update back");
        Ok(())
    }
}
