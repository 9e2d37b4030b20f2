//! The three loading strategies give the same answers, and the detector tells them apart:
//! lazy loading is an N+1, joined and select-in loading are not.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use entity::users;
use mercado_lab::{
    loading::{self, Strategy},
    seed,
};
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use sql_observe::{self as observe, DetectorMode, ObserveConfig, Scope, ScopeReport};

/// The capture as an application configures it: call sites in this workspace's lab crate,
/// token hashes secret, statements logged on the application's target.
fn configured() -> ObserveConfig {
    ObserveConfig::default()
        .with_own_crate("mercado_lab")
        .with_secret_column("token_hash")
        .log_to(sql_observe::tracing_log!("mercado::sql"))
}

fn observed(db: &TestDb) -> DatabaseConnection {
    let mut conn = db.conn.clone();
    observe::install(&mut conn, configured().with_mode(DetectorMode::Warn));
    conn
}

async fn scoped<T>(
    name: &str,
    future: impl Future<Output = Result<T, sea_orm::DbErr>>,
) -> anyhow::Result<(T, ScopeReport)> {
    let (answer, report) = observe::scope(Scope::test(name), future).await;
    Ok((answer?, report))
}

/// Asserts the three answers are equal, lazy is flagged and the others are not.
fn assert_same_answers_and_verdicts<T: PartialEq + std::fmt::Debug>(runs: [(T, ScopeReport); 3]) {
    let [
        (lazy, lazy_report),
        (joined, joined_report),
        (select_in, select_in_report),
    ] = runs;
    assert_eq!(lazy, joined);
    assert_eq!(lazy, select_in);
    assert!(
        lazy_report.n_plus_one().next().is_some(),
        "lazy must be flagged"
    );
    assert!(
        joined_report.findings.is_empty(),
        "{:#?}",
        joined_report.findings
    );
    assert!(
        select_in_report.findings.is_empty(),
        "{:#?}",
        select_in_report.findings
    );
    assert_eq!(joined_report.statement_count(), 1);
}

backend_tests! {
    async fn conversations_with_messages_and_senders_agree_across_strategies(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db);
        let data = seed::demo(&conn, 4).await?;
        let ids = &data.conversations;

        let runs = [
            scoped("lazy", loading::threads_lazy(&conn, ids)).await?,
            scoped("joined", loading::threads_joined(&conn, ids)).await?,
            scoped("select-in", loading::threads_select_in(&conn, ids)).await?,
        ];

        assert_eq!(runs[0].0.len(), 4);
        assert!(runs[0].0.iter().all(|t| t.messages.len() == 3 && t.messages.iter().all(|m| !m.sender.is_empty())));
        assert_eq!(runs[0].1.statement_count(), 1 + 4 + 12);
        assert_eq!(runs[2].1.statement_count(), 3);
        assert_same_answers_and_verdicts(runs);
        Ok(())
    }

    async fn users_with_conversations_agree_across_strategies(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db);
        let data = seed::demo(&conn, 4).await?;
        let ids = &data.users;

        let runs = [
            scoped("lazy", loading::user_conversations_lazy(&conn, ids)).await?,
            scoped("joined", loading::user_conversations_joined(&conn, ids)).await?,
            scoped("select-in", loading::user_conversations_select_in(&conn, ids)).await?,
        ];

        assert!(runs[0].0.iter().all(|u| u.conversations.len() == 2));
        assert_eq!(runs[2].1.statement_count(), 2);
        assert_same_answers_and_verdicts(runs);
        Ok(())
    }

    async fn products_with_inventory_agree_across_strategies(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db);
        let data = seed::demo(&conn, 4).await?;
        let ids = &data.products;

        let runs = [
            scoped("lazy", loading::product_stock_lazy(&conn, ids)).await?,
            scoped("joined", loading::product_stock_joined(&conn, ids)).await?,
            scoped("select-in", loading::product_stock_select_in(&conn, ids)).await?,
        ];

        let quantities: Vec<_> = runs[0].0.iter().map(|p| p.quantity).collect();
        assert_eq!(quantities, [Some(10), None, Some(30), None]);
        assert_same_answers_and_verdicts(runs);
        Ok(())
    }

    async fn messages_with_what_they_reply_to_agree_across_strategies(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db);
        let data = seed::demo(&conn, 3).await?;
        let ids = &data.messages;

        let runs = [
            scoped("lazy", loading::replies_lazy(&conn, ids)).await?,
            scoped("joined", loading::replies_joined(&conn, ids)).await?,
            scoped("select-in", loading::replies_select_in(&conn, ids)).await?,
        ];

        assert_eq!(runs[0].0.len(), 9);
        assert_eq!(runs[0].0.iter().filter(|m| m.reply_to.is_some()).count(), 6);
        assert_same_answers_and_verdicts(runs);
        Ok(())
    }

    async fn users_with_orders_and_items_agree_across_strategies(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db);
        let data = seed::demo(&conn, 6).await?;
        let ids = &data.users;

        let runs = [
            scoped("lazy", loading::user_orders_lazy(&conn, ids)).await?,
            scoped("joined", loading::user_orders_joined(&conn, ids)).await?,
            scoped("select-in", loading::user_orders_select_in(&conn, ids)).await?,
        ];

        let orders_per_user: Vec<_> = runs[0].0.iter().map(|u| u.orders.len()).collect();
        assert_eq!(orders_per_user, [0, 1, 2, 0, 1, 2]);
        let items_of_user_2: Vec<_> = runs[0].0[2].orders.iter().map(|o| o.items.len()).collect();
        assert_eq!(items_of_user_2, [1, 2]);
        assert_eq!(runs[2].1.statement_count(), 3);
        assert_same_answers_and_verdicts(runs);
        Ok(())
    }

    async fn the_demo_flags_only_lazy_loading_and_leaves_no_trace(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db);
        let users_before = users::Entity::find().count(&conn).await?;

        let report = loading::run_demo(&conn, 5).await?;

        assert_eq!(report.sections.len(), 5);
        for section in &report.sections {
            assert!(section.same_answer, "{}", section.question);
            for run in &section.runs {
                assert_eq!(run.n_plus_one, run.strategy == Strategy::Lazy, "{} {:?}", section.question, run.strategy);
                assert_eq!(run.statement_count, run.statements.len());
            }
        }
        assert_eq!(users::Entity::find().count(&conn).await?, users_before);
        Ok(())
    }
}
