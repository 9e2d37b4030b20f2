//! The orders repository: orders and their items.
//!
//! What the order views show is read in one joined statement: an order with its lines and
//! their products' names, for one order ([`find_with_items`]) or for all of a buyer's orders at
//! once ([`list_with_items`]), so showing N orders costs one statement, not N + 1 or two. The
//! cancellation reads an order's items with their sellers ([`items_of_order`]) to give the
//! money back.

use chrono::{DateTime, FixedOffset};
use entity::{order_items, orders, products};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait, Select, Set, sea_query::Expr,
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

/// An order joined with one of its lines and that line's product name: what the order view
/// shows, one row per line. The line's columns are `None` only for an order without lines,
/// which `place_order` never writes but the schema does not forbid.
#[derive(Debug, Clone, FromQueryResult)]
pub struct OrderLineRow {
    pub id: i64,
    pub status: String,
    pub total: Decimal,
    pub created_at: DateTime<FixedOffset>,
    pub product_id: Option<i64>,
    pub name: Option<String>,
    pub quantity: Option<i32>,
    pub unit_price: Option<Decimal>,
}

/// Orders `LEFT JOIN` their items and the items' products, selecting only what an
/// [`OrderLineRow`] holds.
fn orders_with_lines() -> Select<orders::Entity> {
    orders::Entity::find()
        .select_only()
        .columns([
            orders::Column::Id,
            orders::Column::Status,
            orders::Column::Total,
            orders::Column::CreatedAt,
        ])
        .columns([
            order_items::Column::ProductId,
            order_items::Column::Quantity,
            order_items::Column::UnitPrice,
        ])
        .column(products::Column::Name)
        .join(
            JoinType::LeftJoin,
            order_items::Relation::Orders.def().rev(),
        )
        .join(JoinType::LeftJoin, order_items::Relation::Products.def())
}

/// The order, if `buyer_id` placed it, with its lines in the order they were sent: one
/// statement, where reading the order and then its items takes two. No rows means no such
/// order of this buyer.
pub async fn find_with_items<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
    order_id: i64,
) -> Result<Vec<OrderLineRow>, DbErr> {
    orders_with_lines()
        .filter(orders::Column::Id.eq(order_id))
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .order_by_asc(order_items::Column::Position)
        .into_model::<OrderLineRow>()
        .all(db)
        .await
}

/// Every order of `buyer_id`, newest (highest id) first, each followed by its lines in the
/// order they were sent: one statement with one bound value, however many orders.
pub async fn list_with_items<C: ConnectionTrait>(
    db: &C,
    buyer_id: i64,
) -> Result<Vec<OrderLineRow>, DbErr> {
    orders_with_lines()
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .order_by_desc(orders::Column::Id)
        .order_by_asc(order_items::Column::Position)
        .into_model::<OrderLineRow>()
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
