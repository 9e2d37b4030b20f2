//! The SQL capture and the N+1 detector, on real databases: what is flagged and what is not,
//! scopes that never mix, raise mode, the safelist, and secrets that never reach a log.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;

use entity::{api_tokens, products, users};
use futures::FutureExt;
use mercado_lab::{loading, seed};
use mercado_testkit::{TestDb, backend_tests, log::CapturedLog};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use sql_observe::{
    self as observe, DetectorMode, FindingKind, ObserveConfig, SafelistEntry, Scope,
    assert_no_growth, assert_statement_count, assert_statements_at_most,
};
use tracing::instrument::WithSubscriber;

/// The capture as an application configures it: call sites in this workspace's lab crate,
/// token hashes secret, statements logged on the application's target.
fn configured() -> ObserveConfig {
    ObserveConfig::default()
        .with_own_crate("mercado_lab")
        .with_secret_column("token_hash")
        .log_to(sql_observe::tracing_log!("mercado::sql"))
}

/// The test database's pool with the capture installed.
fn observed(db: &TestDb, config: ObserveConfig) -> DatabaseConnection {
    let mut conn = db.conn.clone();
    observe::install(&mut conn, config);
    conn
}

/// `name` as `db`'s backend quotes an identifier in the SQL it sends: `"name"`, or `` `name` ``
/// on MySQL. (Fingerprints spell every identifier the first way, whatever the backend.)
fn quoted(db: &TestDb, name: &str) -> String {
    match db.db_backend() {
        sea_orm::DbBackend::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

fn new_user(tag: &str) -> users::ActiveModel {
    users::ActiveModel {
        username: Set(tag.to_owned()),
        username_canonical: Set(tag.to_owned()),
        email: Set(format!("{tag}@example.com")),
        email_canonical: Set(format!("{tag}@example.com")),
        display_name: Set(tag.to_owned()),
        ..Default::default()
    }
}

backend_tests! {
    async fn select_in_loading_is_not_flagged(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let data = seed::demo(&conn, 5).await?;

        let (threads, report) = observe::scope(
            Scope::test("select-in"),
            loading::threads_select_in(&conn, &data.conversations),
        )
        .await;

        assert_eq!(threads?.len(), 5);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!(report.statement_count(), 3, "{:#?}", report.statements);
        assert!(report.summary().is_none());
        Ok(())
    }

    async fn a_lazy_loop_is_flagged_with_its_fingerprint_count_and_call_site(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let data = seed::demo(&conn, 4).await?;

        let (users_found, report) = observe::scope(
            Scope::test("lazy"),
            loading::user_conversations_lazy(&conn, &data.users),
        )
        .await;

        assert_eq!(users_found?.len(), 4);
        let per_user: Vec<_> = report
            .statements
            .iter()
            .filter(|s| s.sql.contains(&quoted(&db, "conversation_participants")))
            .collect();
        assert_eq!(per_user.len(), 4);
        let finding = report.n_plus_one().next().expect("the loop is an N+1");
        assert_eq!(finding.fingerprint, per_user[0].fingerprint);
        assert!(finding.fingerprint.contains("\"users\".\"id\" = ?"), "{}", finding.fingerprint);
        assert_eq!(finding.count, 4);
        assert_eq!(finding.distinct_values, 4);
        let call_site = finding.call_site.as_deref().unwrap_or_default();
        assert!(
            call_site.starts_with("mercado_lab::loading::user_conversations_lazy"),
            "{call_site}"
        );
        assert!(finding.fix.contains("load_many"), "{}", finding.fix);
        let summary = report.summary().expect("a summary for x-n-plus-one");
        assert!(summary.starts_with("4x SELECT"), "{summary}");
        assert!(summary.contains("user_conversations_lazy"), "{summary}");
        assert_eq!(report.statement_count(), 5);
        assert!(report.server_timing().starts_with("db;dur="), "{}", report.server_timing());
        assert!(report.server_timing().ends_with("desc=\"5 statements\""));
        Ok(())
    }

    async fn the_same_query_with_the_same_values_is_a_duplicate_not_an_n_plus_one(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let user = users::Entity::insert(new_user("dup")).exec_with_returning(&conn).await?;

        let (_, report) = observe::scope(Scope::test("duplicates"), async {
            for _ in 0..3 {
                users::Entity::find_by_id(user.id).one(&conn).await?;
            }
            anyhow::Ok(())
        })
        .await;

        assert_eq!(report.n_plus_one().count(), 0, "{:#?}", report.findings);
        let duplicate = report.duplicates().next().expect("a duplicate");
        assert_eq!(duplicate.kind, FindingKind::Duplicate);
        assert_eq!(duplicate.count, 3);
        Ok(())
    }

    async fn pages_of_one_query_are_not_flagged(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        seed::demo(&conn, 7).await?;

        let (pages, report) = observe::scope(Scope::test("pages"), async {
            let paginator = users::Entity::find().order_by_asc(users::Column::Id).paginate(&conn, 3);
            let mut pages = Vec::new();
            for page in 0..3 {
                pages.push(paginator.fetch_page(page).await?);
            }
            anyhow::Ok(pages)
        })
        .await;

        assert_eq!(pages?.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(report.statement_count(), 3);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        Ok(())
    }

    async fn chunked_inserts_are_not_flagged_but_an_insert_per_row_is(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());

        let (_, chunked) = observe::scope(Scope::test("chunked"), async {
            let rows: Vec<_> = (0..10).map(|i| new_user(&format!("chunk{i}"))).collect();
            for chunk in rows.chunks(3) {
                users::Entity::insert_many(chunk.to_vec()).exec_without_returning(&conn).await?;
            }
            anyhow::Ok(())
        })
        .await;
        let (_, per_row) = observe::scope(Scope::test("per row"), async {
            for i in 0..4 {
                users::Entity::insert(new_user(&format!("row{i}"))).exec_without_returning(&conn).await?;
            }
            anyhow::Ok(())
        })
        .await;

        assert_eq!(chunked.statement_count(), 4);
        assert!(chunked.findings.is_empty(), "{:#?}", chunked.findings);
        let finding = per_row.n_plus_one().next().expect("an insert per row is an N+1");
        assert_eq!(finding.count, 4);
        assert!(finding.fix.contains("insert_many"), "{}", finding.fix);
        Ok(())
    }

    async fn two_concurrent_scopes_never_see_each_others_statements(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let data = seed::demo(&conn, 3).await?;

        let users_conn = conn.clone();
        let user_id = data.users[0];
        let reading_users = tokio::spawn(observe::scope(Scope::request("GET /users"), async move {
            for _ in 0..6 {
                users::Entity::find_by_id(user_id).one(&users_conn).await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        }));
        let products_conn = conn.clone();
        let product_id = data.products[0];
        let reading_products = tokio::spawn(observe::scope(Scope::request("GET /products"), async move {
            for _ in 0..9 {
                products::Entity::find_by_id(product_id).one(&products_conn).await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        }));
        let (users_result, users_report) = reading_users.await?;
        let (products_result, products_report) = reading_products.await?;
        users_result?;
        products_result?;

        assert_eq!(users_report.statement_count(), 6);
        let (from_users, from_products) = (format!("FROM {}", quoted(&db, "users")), format!("FROM {}", quoted(&db, "products")));
        assert!(users_report.statements.iter().all(|s| s.sql.contains(&from_users)));
        assert_eq!(products_report.statement_count(), 9);
        assert!(products_report.statements.iter().all(|s| s.sql.contains(&from_products)));
        Ok(())
    }

    async fn every_captured_statement_carries_the_rows_it_returned_or_affected(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());

        let (outcome, report) = observe::scope(Scope::test("rows"), async {
            let five: Vec<_> = (0..5).map(|i| new_user(&format!("rows{i}"))).collect();
            users::Entity::insert_many(five).exec_without_returning(&conn).await?;
            users::Entity::find().all(&conn).await?;
            users::Entity::update_many()
                .col_expr(users::Column::DisplayName, "renamed".into())
                .filter(users::Column::Username.is_in(["rows1", "rows2"]))
                .exec(&conn)
                .await?;
            users::Entity::find_by_id(-1).one(&conn).await?;
            users::Entity::delete_many()
                .filter(users::Column::Username.eq("nobody"))
                .exec(&conn)
                .await?;
            anyhow::Ok(())
        })
        .await;
        outcome?;

        let rows: Vec<Option<u64>> = report.statements.iter().map(|s| s.rows).collect();
        assert_eq!(
            rows,
            [Some(5), Some(5), Some(2), Some(0), Some(0)],
            "insert 5, select 5, update 2, find none, delete none: {:#?}",
            report.statements
        );
        assert!(report.statements[1].to_string().ends_with("-- 5 rows"));
        Ok(())
    }

    async fn concurrent_scopes_each_receive_their_own_row_counts(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let ten: Vec<_> = (0..10).map(|i| new_user(&format!("many{i}"))).collect();
        users::Entity::insert_many(ten).exec_without_returning(&conn).await?;

        let reading = |limit: u64| {
            let conn = conn.clone();
            tokio::spawn(observe::scope(Scope::request(format!("limit {limit}")), async move {
                for _ in 0..8 {
                    users::Entity::find()
                        .order_by_asc(users::Column::Id)
                        .paginate(&conn, limit)
                        .fetch_page(0)
                        .await?;
                    tokio::task::yield_now().await;
                }
                anyhow::Ok(())
            }))
        };
        let (two, seven) = (reading(2), reading(7));
        let (two_result, two_report) = two.await?;
        let (seven_result, seven_report) = seven.await?;
        two_result?;
        seven_result?;

        assert_eq!(two_report.statement_count(), 8);
        assert!(two_report.statements.iter().all(|s| s.rows == Some(2)), "{:#?}", two_report.statements);
        assert_eq!(seven_report.statement_count(), 8);
        assert!(seven_report.statements.iter().all(|s| s.rows == Some(7)), "{:#?}", seven_report.statements);
        Ok(())
    }

    async fn the_scaling_assertion_catches_a_find_related_loop_and_passes_select_in(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured().with_mode(DetectorMode::Off));

        let lazy = AssertUnwindSafe(assert_no_growth(|n| {
            let conn = conn.clone();
            async move {
                let data = observe::unobserved(seed::demo(&conn, n)).await?;
                loading::product_stock_lazy(&conn, &data.products).await?;
                anyhow::Ok(())
            }
        }))
        .catch_unwind()
        .await;
        let select_in = assert_no_growth(|n| {
            let conn = conn.clone();
            async move {
                let data = observe::unobserved(seed::demo(&conn, n)).await?;
                loading::product_stock_select_in(&conn, &data.products).await?;
                anyhow::Ok(())
            }
        })
        .await;

        let message = panic_message(lazy.expect_err("the lazy loop grows with n"));
        assert!(message.contains("[2, 5, 10] x SELECT"), "{message}");
        assert!(message.contains("\"inventory\""), "{message}");
        assert!(select_in.iter().all(|r| r.statement_count() == 2));
        Ok(())
    }

    async fn raise_mode_fails_the_scope_with_the_finding(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db, configured().with_mode(DetectorMode::Raise));
        let data = seed::demo(&conn, 3).await?;

        let raised = AssertUnwindSafe(observe::scope(
            Scope::test("raise"),
            loading::product_stock_lazy(&conn, &data.products),
        ))
        .catch_unwind()
        .await;
        let (_, clean) = observe::scope(
            Scope::test("raise, select-in"),
            loading::product_stock_select_in(&conn, &data.products),
        )
        .await;

        let message = panic_message(raised.expect_err("raise mode panics on an N+1"));
        assert!(message.contains("N+1: 3x SELECT"), "{message}");
        assert!(message.contains("product_stock_lazy"), "{message}");
        assert!(clean.raise().is_ok());
        Ok(())
    }

    async fn a_safelisted_pattern_is_suppressed_with_its_reason(db: TestDb) -> anyhow::Result<()> {
        let reason = "each product's stock is read on its own on purpose";
        let conn = observed(
            &db,
            configured().safelist(
                SafelistEntry::new("FROM \"inventory\"", reason).in_function("product_stock_lazy"),
            ),
        );
        let data = seed::demo(&conn, 3).await?;

        let (_, report) = observe::scope(
            Scope::test("safelist"),
            loading::product_stock_lazy(&conn, &data.products),
        )
        .await;

        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!(report.suppressed.len(), 1);
        assert_eq!(report.suppressed[0].safelisted.as_deref(), Some(reason));
        Ok(())
    }

    async fn statement_count_assertions_pass_and_fail_as_they_should(
        db: TestDb
    ) -> anyhow::Result<()> {
        let conn = observed(&db, configured().with_mode(DetectorMode::Off));
        let data = seed::demo(&conn, 3).await?;

        assert_statement_count(2, loading::product_stock_select_in(&conn, &data.products)).await?;
        assert_statements_at_most(2, loading::product_stock_joined(&conn, &data.products)).await?;
        let too_many = AssertUnwindSafe(assert_statements_at_most(
            2,
            loading::product_stock_lazy(&conn, &data.products),
        ))
        .catch_unwind()
        .await;

        let message = panic_message(too_many.expect_err("4 statements are more than 2"));
        assert!(message.contains("at most 2 statement(s), the block sent 4"), "{message}");
        Ok(())
    }

    async fn secret_values_never_reach_the_log_or_the_report(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let user = users::Entity::insert(new_user("secretive")).exec_with_returning(&conn).await?;
        let secret = "3f9a-the-token-hash-nobody-may-see";
        let log = CapturedLog::default();

        let (_, report) = observe::scope(Scope::test("secrets"), async {
            api_tokens::Entity::insert(api_tokens::ActiveModel {
                user_id: Set(user.id),
                token_hash: Set(secret.to_owned()),
                ..Default::default()
            })
            .exec_without_returning(&conn)
            .await?;
            api_tokens::Entity::find()
                .filter(api_tokens::Column::TokenHash.eq(secret))
                .one(&conn)
                .await?
                .expect("the token was inserted");
            api_tokens::Entity::find()
                .filter(api_tokens::Column::TokenHash.is_in([secret, "another"]))
                .all(&conn)
                .await?;
            anyhow::Ok(())
        }
        .with_subscriber(log.subscriber_like_the_binary("mercado::sql=debug")))
        .await;

        let logged = log.text();
        assert!(logged.contains(&format!("INSERT INTO {}", quoted(&db, "api_tokens"))), "{logged}");
        assert!(logged.contains("'***'"), "{logged}");
        assert!(logged.contains(&user.id.to_string()), "the user id is not secret: {logged}");
        assert!(!logged.contains(secret), "{logged}");
        assert!(!logged.contains("another"), "{logged}");
        let reported = serde_json::to_string(&report)?;
        assert!(!reported.contains(secret), "{reported}");
        assert_eq!(report.statement_count(), 3);
        Ok(())
    }

    async fn warn_mode_logs_a_warning_naming_the_statement(db: TestDb) -> anyhow::Result<()> {
        let conn = observed(&db, configured());
        let data = seed::demo(&conn, 3).await?;
        let log = CapturedLog::default();

        let (stock, _) = observe::scope(
            Scope::request("GET /products"),
            loading::product_stock_lazy(&conn, &data.products),
        )
        .with_subscriber(log.subscriber_like_the_binary("mercado::sql=debug"))
        .await;
        stock?;

        let logged = log.text();
        let warning = logged
            .lines()
            .find(|line| line.contains("WARN"))
            .unwrap_or_else(|| panic!("no warning in:\n{logged}"));
        assert!(warning.contains("N+1: 3x SELECT"), "{warning}");
        assert!(warning.contains("\"inventory\""), "{warning}");
        assert!(warning.contains("product_stock_lazy"), "{warning}");
        Ok(())
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}
