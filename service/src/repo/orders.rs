//! The orders repository: orders and their items.
//!
//! An order's items are always read together with their products' names and sellers in one
//! joined statement — for one order, or for all of a buyer's orders at once — so showing N
//! orders costs two statements, not N + 1.

use chrono::{DateTime, FixedOffset};
use entity::{order_items, orders, products};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Select, Set, sea_query::Expr,
};

use crate::{
    domain::{money::Money, orders::OrderStatus},
    error::UniqueConstraint,
};

/// A buyer uses an idempotency key for one order only.
pub const IDEMPOTENCY_KEY_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_orders_buyer_id_idempotency_key",
    table: "orders",
    columns: &["buyer_id", "idempotency_key"],
};

/// An order's line with its product's name and seller.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ItemRow {
    pub order_id: i64,
    pub product_id: i64,
    pub position: i32,
    pub quantity: i32,
    pub unit_price: Decimal,
    pub name: String,
    pub seller_id: i64,
}

/// A line to insert: `(product_id, quantity, unit_price)`; its position is its index.
pub type NewItem = (i64, i32, Money);

/// Inserts a paid order. With a key the buyer already used, this fails with a unique violation
/// of [`IDEMPOTENCY_KEY_UNIQUE`] — on PostgreSQL after waiting for the transaction that holds
/// the key to end, which is what makes two racing requests with one key safe.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
    total: Money,
    idempotency_key: Option<&str>,
    created_at: DateTime<FixedOffset>,
) -> Result<i64, DbErr> {
    let inserted = orders::Entity::insert(orders::ActiveModel {
        buyer_id: Set(buyer_id),
        status: Set(OrderStatus::Paid.as_str().to_owned()),
        total: Set(total.as_decimal()),
        idempotency_key: Set(idempotency_key.map(str::to_owned)),
        created_at: Set(created_at),
        cancelled_at: Set(None),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(inserted.last_insert_id)
}

/// Inserts all of an order's lines in one statement (at most 50 lines × 5 columns binds).
pub async fn insert_items<C: ConnectionTrait>(
    db: &C,
    order_id: i64,
    items: &[NewItem],
) -> Result<(), DbErr> {
    let rows = items
        .iter()
        .zip(0..)
        .map(
            |(&(product_id, quantity, unit_price), position)| order_items::ActiveModel {
                order_id: Set(order_id),
                product_id: Set(product_id),
                position: Set(position),
                quantity: Set(quantity),
                unit_price: Set(unit_price.as_decimal()),
            },
        );
    order_items::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The buyer's order placed with idempotency key `key`, if any: keys belong to their buyer.
pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
    key: &str,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .filter(orders::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// The order `order_id` if `buyer_id` placed it; someone else's order is not found.
pub async fn find_for_buyer<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
    order_id: i64,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find_by_id(order_id)
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .one(db)
        .await
}

/// All of a buyer's orders, newest (highest id) first — an index range on `(buyer_id, id)`.
pub async fn list_for_buyer<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
) -> Result<Vec<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .order_by_desc(orders::Column::Id)
        .all(db)
        .await
}

/// Flips a paid order of `buyer_id` to cancelled. `false`: no such paid order (it does not
/// exist, is someone else's, or is already cancelled); nothing changed. Racing cancels queue on
/// the row lock, and each re-checks `status = 'paid'` after the one before it committed, so
/// exactly one of them gets `true`.
pub async fn mark_cancelled<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
    order_id: i64,
    cancelled_at: DateTime<FixedOffset>,
) -> Result<bool, DbErr> {
    let updated = orders::Entity::update_many()
        .col_expr(
            orders::Column::Status,
            Expr::val(OrderStatus::Cancelled.as_str()),
        )
        .col_expr(orders::Column::CancelledAt, Expr::val(cancelled_at))
        .filter(orders::Column::Id.eq(order_id))
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .filter(orders::Column::Status.eq(OrderStatus::Paid.as_str()))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Items joined with their products, selecting only what an [`ItemRow`] holds.
fn items_with_products() -> Select<order_items::Entity> {
    order_items::Entity::find()
        .select_only()
        .columns([
            order_items::Column::OrderId,
            order_items::Column::ProductId,
            order_items::Column::Position,
            order_items::Column::Quantity,
            order_items::Column::UnitPrice,
        ])
        .column(products::Column::Name)
        .column(products::Column::SellerId)
        .inner_join(products::Entity)
}

/// One order's items, in the order they were sent.
pub async fn items_of_order<C: ConnectionTrait>(
    db: &C,
    order_id: i64,
) -> Result<Vec<ItemRow>, DbErr> {
    items_with_products()
        .filter(order_items::Column::OrderId.eq(order_id))
        .order_by_asc(order_items::Column::Position)
        .into_model::<ItemRow>()
        .all(db)
        .await
}

/// The items of every order of `buyer_id`, grouped by order and in the order they were sent:
/// one statement however many orders there are, with one bound value (no `IN` list to outgrow
/// the bind-parameter limit).
pub async fn items_of_buyer<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
) -> Result<Vec<ItemRow>, DbErr> {
    items_with_products()
        .inner_join(orders::Entity)
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .order_by_asc(order_items::Column::OrderId)
        .order_by_asc(order_items::Column::Position)
        .into_model::<ItemRow>()
        .all(db)
        .await
}
