//! The ORM and the hand-written SQL of every canonical query return the same rows, on every
//! backend, and the comparison's deliberate repeats are not reported as N+1 patterns.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use entity::inventory;
use mercado_lab::compare;
use mercado_testkit::{TestDb, backend_tests, log::CapturedLog};
use sea_orm::{DbBackend, EntityTrait, TransactionTrait};
use sql_observe::{self as observe, DetectorMode, ObserveConfig, Scope};
use tracing::instrument::WithSubscriber;

/// Mercado's capture configuration, as far as it matters here: findings logged on
/// `mercado::sql`, call sites in Mercado's crates.
fn application_config() -> ObserveConfig {
    ObserveConfig::default()
        .log_to(sql_observe::tracing_log!("mercado::sql"))
        .with_own_crate("service")
        .with_own_crate("mercado_lab")
}

backend_tests! {
    async fn every_case_returns_identical_results_through_both_orm_sides_and_raw_sql(
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
            // Done right, the ORM sends the work the raw SQL sends: as many statements.
            assert_eq!(
                case.tuned.statement_count, case.raw.statement_count,
                "{}: {:#?}", case.name, case.tuned.sql
            );
            let non_empty = case.result.as_array().is_none_or(|rows| !rows.is_empty());
            assert!(non_empty, "{} returned no rows: nothing was compared", case.name);
            assert_eq!(case.orm.explain.is_some(), db.db_backend() != DbBackend::Sqlite);
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

    async fn the_guarded_update_twice_in_a_loop_is_suppressed_with_the_comparisons_reason_and_on_two_lines_is_no_finding(
        db: TestDb
    ) -> anyhow::Result<()> {
        let mut conn = db.conn.clone();
        observe::install(&mut conn, compare::with_deliberate_repeats(application_config()));
        let inputs = compare::seed_compare_data(&conn).await?;

        let (orm, orm_report) =
            observe::scope(Scope::test("orm"), compare::guarded_update_orm(&conn, &inputs)).await;
        let (raw, raw_report) =
            observe::scope(Scope::test("raw"), compare::guarded_update_raw(&conn, &inputs)).await;

        assert_eq!(orm?, raw?);
        // The ORM side calls the update once on each of two lines: two places, not a loop.
        assert!(orm_report.findings.is_empty(), "{:#?}", orm_report.findings);
        assert!(orm_report.suppressed.is_empty(), "{:#?}", orm_report.suppressed);
        // The raw side runs it twice in a loop: a repetition, safelisted with its reason.
        assert!(raw_report.findings.is_empty(), "{:#?}", raw_report.findings);
        assert_eq!(raw_report.suppressed.len(), 1, "{:#?}", raw_report.suppressed);
        let reason = raw_report.suppressed[0].safelisted.as_deref();
        assert_eq!(reason, Some(compare::GUARDED_UPDATE_TWICE));
        Ok(())
    }

    async fn the_comparison_logs_no_repeated_statement_warning(db: TestDb) -> anyhow::Result<()> {
        let log = CapturedLog::default();

        let report = compare::run_compare(&db.conn, application_config())
            .with_subscriber(log.subscriber_like_the_binary("mercado::sql=warn"))
            .await?;

        assert_eq!(report.cases.len(), 6);
        let logged = log.text();
        assert!(!logged.contains("WARN"), "{logged}");
        Ok(())
    }
}
