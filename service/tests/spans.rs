//! The operations' spans, seen as an operator sees them: under the binary's default filter
//! (`LOG_LEVEL=info`), a warning logged inside an operation names what the operation works on.

// In a test, a broken expectation is a failed test: unwrap says so most directly.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::Context;
use sea_orm::ConnectionTrait;
use service::ops::orders::place_order;
use support::{order_of, product, user_with};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};

/// A log sink for a test subscriber: everything written, as text.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// A subscriber built as the binary builds its own (`src/telemetry.rs`): a registry with a
    /// text printer filtered by `filter`, the filter the printer's alone.
    fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync + 'static {
        // tracing caches per-callsite interest; while a single dispatcher exists it asks only the
        // registering thread's default, so a callsite first reached by another test (with no
        // subscriber) would stay disabled for ours. A second, never-dropped dispatcher makes it
        // ask every registered one (as `lab/tests/observe.rs` does).
        static SECOND_DISPATCHER: OnceLock<tracing::Dispatch> = OnceLock::new();
        SECOND_DISPATCHER
            .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let sink = self.clone();
        tracing_subscriber::registry()
            .with(sql_observe::row_count_layer())
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || sink.clone())
                    .with_filter(EnvFilter::new(filter)),
            )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

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
            .with_subscriber(log.subscriber("info"))
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
