//! Arrangements the commerce tests share: users with money, products with stock, order lines,
//! and direct reads of the state the assertions are about. Everything goes through the real
//! operations; the reads go straight to the tables, so a test checks what was stored.
// Each test file uses a different part of this module; the fixtures build from literals, so a
// failing `expect` is a bug in the test itself.
#![allow(dead_code, clippy::expect_used)]

use anyhow::Context;
use entity::{accounts, inventory, order_items, orders, transfers};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use service::domain::{
    money::Money,
    orders::{OrderLines, PlaceOrder, Quantity},
    products::{NewProduct, Product, ProductName, Sku, Stock},
    users::{Email, NewUser, Registered, Username},
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
        ops::money::deposit(db, user.id, money(balance)).await?;
    }
    Ok(user.id)
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
