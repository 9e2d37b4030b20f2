//! The operations' spans, seen as an operator sees them: under the binary's default filter
//! (`LOG_LEVEL=info`), a warning logged inside an operation names what the operation works on.

// In a test, a broken expectation is a failed test: unwrap says so most directly.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use anyhow::Context;
use mercado_testkit::log::CapturedLog;
use sea_orm::ConnectionTrait;
use service::ops::orders::place_order;
use support::{order_of, product, user_with};
use tracing::instrument::WithSubscriber;

postgres_tests! {
    // PostgreSQL only: a trigger can fail a statement with a retryable SQLSTATE there; SQLite's
    // only retryable failure is a busy file, which no trigger can raise.
    async fn a_retry_warning_inside_place_order_names_the_buyer_under_the_default_filter(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let buyer = user_with(&db.conn, "buyer", "100").await?;
        let pen = product(&db.conn, seller, "PEN", "2.50", 10).await?;
        // The first order insert fails as a serialization failure would; the second goes
        // through. A sequence counts the attempts because it ignores the rollback.
        for sql in [
            "CREATE SEQUENCE order_insert_attempts",
            "CREATE FUNCTION abort_the_first_order() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF nextval('order_insert_attempts') = 1 THEN \
                 RAISE EXCEPTION 'forced by the test' USING ERRCODE = 'serialization_failure'; \
               END IF; \
               RETURN NEW; \
             END $$",
            "CREATE TRIGGER abort_the_first_order BEFORE INSERT ON orders \
             FOR EACH ROW EXECUTE FUNCTION abort_the_first_order()",
        ] {
            db.conn.execute_unprepared(sql).await?;
        }
        let log = CapturedLog::default();

        let order = place_order(&db.conn, buyer, order_of(&[(pen.id, 1)]))
            .with_subscriber(log.subscriber_like_the_binary("info"))
            .await?;

        let text = log.text();
        let warning = text
            .lines()
            .find(|line| line.contains("running it again"))
            .with_context(|| format!("no retry warning in:\n{text}"))?;
        assert!(warning.contains(" WARN "), "{warning}");
        assert!(
            warning.contains(&format!("place_order{{buyer_id={buyer} lines=1 keyed=false}}")),
            "the warning carries the operation's span: {warning}"
        );
        let placed = text
            .lines()
            .find(|line| line.contains("placed an order"))
            .with_context(|| format!("no success line in:\n{text}"))?;
        assert!(placed.contains(&format!("order_id={}", order.id)), "{placed}");
        Ok(())
    }
}
