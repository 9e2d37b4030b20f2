//! The products repository: products and their stock (`inventory`, one row per product).
//!
//! Stock changes, like balance changes, are single conditional `UPDATE`s whose affected-row
//! count says whether they happened: `quantity = quantity - $1 WHERE product_id = $2 AND
//! quantity >= $1` is the oversell guard — two buyers of the last item cannot both get it.

use chrono::{DateTime, FixedOffset};
use entity::{inventory, products};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set,
    sea_query::{BinOper, CaseStatement, Expr, ExprTrait, Func},
};

use crate::{
    domain::products::{NewProduct, ProductSort, SortOrder},
    error::UniqueConstraint,
};

/// Two products may not share a SKU.
pub const SKU_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_products_sku",
    table: "products",
    columns: &["sku"],
};

/// A product joined with its stock.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ProductRow {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub seller_id: i64,
    pub created_at: DateTime<FixedOffset>,
    pub stock: i32,
}

/// Inserts a product and its inventory row; returns the product's id.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    seller_id: i64,
    new: &NewProduct,
    created_at: DateTime<FixedOffset>,
) -> Result<i64, DbErr> {
    let inserted = products::Entity::insert(products::ActiveModel {
        sku: Set(new.sku.as_str().to_owned()),
        name: Set(new.name.as_str().to_owned()),
        price: Set(new.price.as_decimal()),
        seller_id: Set(seller_id),
        created_at: Set(created_at),
        ..Default::default()
    })
    .exec(db)
    .await?;
    let product_id = inserted.last_insert_id;
    inventory::Entity::insert(inventory::ActiveModel {
        product_id: Set(product_id),
        quantity: Set(new.stock.get()),
    })
    .exec(db)
    .await?;
    Ok(product_id)
}

/// Products with their stock: `products INNER JOIN inventory`, selecting only what a
/// [`ProductRow`] holds.
fn with_stock() -> Select<products::Entity> {
    products::Entity::find()
        .select_only()
        .columns([
            products::Column::Id,
            products::Column::Sku,
            products::Column::Name,
            products::Column::Price,
            products::Column::SellerId,
            products::Column::CreatedAt,
        ])
        .column_as(inventory::Column::Quantity, "stock")
        .inner_join(inventory::Entity)
}

pub async fn find_with_stock<C: ConnectionTrait>(
    db: &C,
    id: i64,
) -> Result<Option<ProductRow>, DbErr> {
    with_stock()
        .filter(products::Column::Id.eq(id))
        .into_model::<ProductRow>()
        .one(db)
        .await
}

/// The products among `ids` that exist, in one statement.
pub async fn find_many<C: ConnectionTrait>(
    db: &C,
    ids: Vec<i64>,
) -> Result<Vec<products::Model>, DbErr> {
    products::Entity::find()
        .filter(products::Column::Id.is_in(ids))
        .all(db)
        .await
}

/// How a search filters and orders; the sort column comes from the [`ProductSort`] allowlist.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    pub name_contains: Option<&'a str>,
    pub sort: ProductSort,
    pub order: SortOrder,
    pub limit: u64,
    pub offset: u64,
}

/// One page of matching products, ordered by the sort column and then by id, so that rows with
/// equal sort values keep one order from page to page.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    search: &Search<'_>,
) -> Result<Vec<ProductRow>, DbErr> {
    let column = match search.sort {
        ProductSort::Name => products::Column::Name,
        ProductSort::Price => products::Column::Price,
        ProductSort::CreatedAt => products::Column::CreatedAt,
    };
    let order = match search.order {
        SortOrder::Asc => Order::Asc,
        SortOrder::Desc => Order::Desc,
    };
    filtered(with_stock(), search.name_contains)
        .order_by(column, order.clone())
        .order_by(products::Column::Id, order)
        .limit(search.limit)
        .offset(search.offset)
        .into_model::<ProductRow>()
        .all(db)
        .await
}

/// How many products match, on every page together.
pub async fn count<C: ConnectionTrait>(db: &C, name_contains: Option<&str>) -> Result<u64, DbErr> {
    filtered(products::Entity::find(), name_contains)
        .count(db)
        .await
}

fn filtered(
    select: Select<products::Entity>,
    name_contains: Option<&str>,
) -> Select<products::Entity> {
    match name_contains {
        Some(text) => select.filter(name_contains_ignoring_case(text)),
        None => select,
    }
}

/// `lower(name) LIKE lower($1) ESCAPE '\'` with `$1 = '%' || escaped(text) || '%'`.
///
/// `%`, `_` and `\` in `text` are escaped so they match themselves. Both sides go through the
/// database's own `lower()`, so they are folded alike: fully on PostgreSQL, ASCII letters only
/// on SQLite (whose `lower()` knows no other case).
fn name_contains_ignoring_case(text: &str) -> Expr {
    let pattern = format!("%{}%", escape_like(text));
    let escaped_pattern = Expr::expr(Func::lower(Expr::val(pattern)))
        .binary(BinOper::Escape, Expr::Constant('\\'.into()));
    Expr::expr(Func::lower(Expr::col((
        products::Entity,
        products::Column::Name,
    ))))
    .binary(BinOper::Like, escaped_pattern)
}

/// Escapes the `LIKE` wildcards `%` and `_`, and the escape character `\` itself.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Takes `quantity` from the product's stock if that much is left. `false`: it is not (or the
/// product has no stock row); nothing changed.
pub async fn take_stock<C: ConnectionTrait>(
    db: &C,
    product_id: i64,
    quantity: i32,
) -> Result<bool, DbErr> {
    let updated = inventory::Entity::update_many()
        .col_expr(
            inventory::Column::Quantity,
            Expr::col(inventory::Column::Quantity).sub(quantity),
        )
        .filter(inventory::Column::ProductId.eq(product_id))
        .filter(inventory::Column::Quantity.gte(quantity))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Puts each `(product_id, quantity)` back into stock, in one statement: `UPDATE inventory SET
/// quantity = quantity + CASE WHEN product_id = $1 THEN $2 … END WHERE product_id IN (…)`.
/// `false`: a product has no stock row (the others were updated; the caller must roll back).
/// Each product must appear once.
pub async fn return_stock<C: ConnectionTrait>(
    db: &C,
    returns: &[(i64, i32)],
) -> Result<bool, DbErr> {
    if returns.is_empty() {
        return Ok(true);
    }
    let quantity_back =
        returns
            .iter()
            .fold(CaseStatement::new(), |case, &(product_id, quantity)| {
                case.case(inventory::Column::ProductId.eq(product_id), quantity)
            });
    let updated = inventory::Entity::update_many()
        .col_expr(
            inventory::Column::Quantity,
            Expr::col(inventory::Column::Quantity).add(quantity_back),
        )
        .filter(inventory::Column::ProductId.is_in(returns.iter().map(|&(id, _)| id)))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == returns.len() as u64)
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    use super::*;

    #[test]
    fn like_wildcards_and_the_escape_character_are_escaped() {
        assert_eq!(escape_like(r"100% a_b \ c"), r"100\% a\_b \\ c");
        assert_eq!(escape_like("plain"), "plain");
    }

    #[test]
    fn the_name_filter_is_a_bound_lower_like_with_an_escape_clause() {
        let postgres = filtered(products::Entity::find(), Some("50%")).build(DbBackend::Postgres);
        // E'\\' is PostgreSQL's escape-string spelling of a single backslash.
        assert!(
            postgres
                .sql
                .ends_with(r#"WHERE LOWER("products"."name") LIKE LOWER($1) ESCAPE E'\\'"#),
            "{}",
            postgres.sql
        );
        let sqlite = filtered(products::Entity::find(), Some("50%")).build(DbBackend::Sqlite);
        assert!(
            sqlite
                .sql
                .ends_with(r#"WHERE LOWER("products"."name") LIKE LOWER(?) ESCAPE '\'"#),
            "{}",
            sqlite.sql
        );
        let values = format!("{:?}", sqlite.values);
        assert!(values.contains(r"%50\\%%"), "{values}");
    }
}
