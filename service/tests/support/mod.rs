//! What the chat tests share: users and products made straight through the entities (user
//! registration belongs to another part of the service), a statement counter, and a macro for
//! tests that only make sense on PostgreSQL.
// Each test binary includes this module and uses a different part of it.
#![allow(dead_code, unused_macros)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use chrono::Utc;
use entity::{products, users};
use mercado_testkit::TestDb;
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};
use service::domain::{
    chat::{Conversation, NewConversation, Title},
    users::UserSummary,
};

/// Creates a user named `name` (lower case, so it is its own canonical form).
pub(crate) async fn create_user(
    db: &impl ConnectionTrait,
    name: &str,
) -> anyhow::Result<UserSummary> {
    let user = users::ActiveModel {
        username: Set(name.to_owned()),
        username_canonical: Set(name.to_lowercase()),
        email: Set(format!("{name}@example.com")),
        email_canonical: Set(format!("{}@example.com", name.to_lowercase())),
        display_name: Set(format!("{name} (display)")),
        created_at: Set(Utc::now().into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(UserSummary::from(&user))
}

/// Creates a product sold by `seller_id`.
pub(crate) async fn create_product(
    db: &impl ConnectionTrait,
    seller_id: i64,
    sku: &str,
) -> anyhow::Result<i64> {
    let product = products::ActiveModel {
        sku: Set(sku.to_owned()),
        name: Set(format!("Product {sku}")),
        price: Set(Decimal::new(1250, 2)),
        seller_id: Set(seller_id),
        created_at: Set(Utc::now().into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(product.id)
}

/// Starts a conversation through the operation under test.
pub(crate) async fn start_conversation(
    db: &DatabaseConnection,
    creator_id: i64,
    title: &str,
    participant_ids: Vec<i64>,
) -> anyhow::Result<Conversation> {
    let new = NewConversation {
        title: Title::parse(title)?,
        participant_ids,
        product_id: None,
    };
    Ok(service::ops::conversations::create_conversation(db, creator_id, new).await?)
}

/// A connection to the test database that counts the statements run through it whose SQL
/// `counts` accepts. BEGIN and COMMIT are not statements to the metric callback.
pub(crate) fn counting_connection(
    db: &TestDb,
    counts: fn(&str) -> bool,
) -> (DatabaseConnection, Arc<AtomicUsize>) {
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&counter);
    let mut conn = db.conn.clone();
    conn.set_metric_callback(move |info| {
        if counts(&info.statement.sql) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (conn, counter)
}

/// Every statement counts.
pub(crate) fn every_statement(_sql: &str) -> bool {
    true
}

/// Declares tests that run on PostgreSQL only, ignored (with the reason) when it is not set up.
macro_rules! postgres_tests {
    ($(
        async fn $name:ident($db:ident : TestDb) -> anyhow::Result<()> $body:block
    )*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(
            not(mercado_postgres),
            ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
        )]
        async fn $name() {
            async fn body($db: mercado_testkit::TestDb) -> anyhow::Result<()> $body
            mercado_testkit::run(mercado_testkit::Backend::Postgres, body).await;
        }
    )*};
}
