//! What the service tests share, one module for all of them: users, money, products and order
//! lines made through the real operations (the same validation and transactions as a request),
//! direct reads of the tables the assertions are about (so a test checks what was stored, not
//! what an operation says it stored), a statement counter, and a macro for tests that only make
//! sense on PostgreSQL.
// Each test file uses a different part of this module; the fixtures build from literals, so a
// failing `expect` is a bug in the test itself.
#![allow(dead_code, unused_macros, clippy::expect_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Context;
use entity::{accounts, deposits, inventory, order_items, orders, transfers};
use mercado_testkit::TestDb;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use service::domain::{
    chat::{Conversation, NewConversation, Title},
    money::Money,
    orders::{IdempotencyKey, OrderLines, PlaceOrder, Quantity},
    products::{NewProduct, Product, ProductName, Sku, Stock},
    users::{Email, NewUser, Registered, UserSummary, Username},
};
use service::ops;

pub(crate) fn money(text: &str) -> Money {
    Money::parse("test", text).expect("test money is well-formed")
}

pub(crate) fn new_user(name: &str) -> NewUser {
    NewUser {
        username: Username::parse(name).expect("test usernames are valid"),
        email: Email::parse(format!("{name}@example.com")).expect("test emails are valid"),
        display_name: None,
    }
}

pub(crate) async fn register(db: &DatabaseConnection, name: &str) -> anyhow::Result<Registered> {
    Ok(ops::users::register(db, new_user(name)).await?)
}

/// A registered user holding `balance`; returns their id.
pub(crate) async fn user_with(
    db: &DatabaseConnection,
    name: &str,
    balance: &str,
) -> anyhow::Result<i64> {
    let user = register(db, name).await?.user;
    if money(balance) != Money::ZERO {
        ops::money::deposit(db, user.id, money(balance), None).await?;
    }
    Ok(user.id)
}

/// Registers `name` and returns them as other users see them (their display name is their
/// username).
pub(crate) async fn create_user(
    db: &DatabaseConnection,
    name: &str,
) -> anyhow::Result<UserSummary> {
    let user = register(db, name).await?.user;
    Ok(UserSummary {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
    })
}

pub(crate) fn new_product(sku: &str, name: &str, price: &str, stock: i64) -> NewProduct {
    NewProduct {
        sku: Sku::parse(sku).expect("test SKUs are valid"),
        name: ProductName::parse(name).expect("test names are valid"),
        price: Money::price(price).expect("test prices are valid"),
        stock: Stock::new(stock).expect("test stock is valid"),
    }
}

pub(crate) async fn product(
    db: &DatabaseConnection,
    seller_id: i64,
    sku: &str,
    price: &str,
    stock: i64,
) -> anyhow::Result<Product> {
    let new = new_product(sku, &format!("Product {sku}"), price, stock);
    Ok(ops::products::create_product(db, seller_id, new).await?)
}

/// Order lines from `(product_id, quantity)` pairs.
pub(crate) fn lines(pairs: &[(i64, i64)]) -> OrderLines {
    OrderLines::new(
        pairs
            .iter()
            .map(|&(id, quantity)| (id, Quantity::new(quantity).expect("test quantity")))
            .collect(),
    )
    .expect("test lines are valid")
}

pub(crate) fn order_of(pairs: &[(i64, i64)]) -> PlaceOrder {
    PlaceOrder {
        lines: lines(pairs),
        idempotency_key: None,
    }
}

pub(crate) async fn balance<C: ConnectionTrait>(db: &C, user_id: i64) -> anyhow::Result<Money> {
    let account = accounts::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .context("the user has an account")?;
    Ok(Money::try_from(account.balance.round_dp(2))?)
}

pub(crate) async fn stock<C: ConnectionTrait>(db: &C, product_id: i64) -> anyhow::Result<i32> {
    let row = inventory::Entity::find_by_id(product_id)
        .one(db)
        .await?
        .context("the product has an inventory row")?;
    Ok(row.quantity)
}

/// The sum of every account's balance: the money in the system.
pub(crate) async fn money_in_system<C: ConnectionTrait>(db: &C) -> anyhow::Result<Money> {
    let mut total = Money::ZERO;
    for account in accounts::Entity::find().all(db).await? {
        let balance = Money::try_from(account.balance.round_dp(2))?;
        total = total.checked_add(balance).context("total fits")?;
    }
    Ok(total)
}

pub(crate) async fn order_count<C: ConnectionTrait>(db: &C) -> anyhow::Result<u64> {
    Ok(orders::Entity::find().count(db).await?)
}

pub(crate) async fn order_item_count<C: ConnectionTrait>(db: &C) -> anyhow::Result<u64> {
    Ok(order_items::Entity::find().count(db).await?)
}

pub(crate) async fn transfer_count<C: ConnectionTrait>(db: &C) -> anyhow::Result<u64> {
    Ok(transfers::Entity::find().count(db).await?)
}

pub(crate) async fn deposit_count<C: ConnectionTrait>(db: &C) -> anyhow::Result<u64> {
    Ok(deposits::Entity::find().count(db).await?)
}

/// An idempotency key, for the operations that take one.
pub(crate) fn key(text: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(text).expect("test keys are valid"))
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
