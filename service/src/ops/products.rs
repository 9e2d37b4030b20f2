//! Operations on products: creating one with its stock, reading one, and searching.

use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    ServiceError,
    db::{begin_read, begin_write, commit, finish, reader},
    domain::{
        money::Money,
        products::{NewProduct, Product, ProductPage, ProductQuery},
    },
    error::DbFailure,
    repo::{self, products::ProductRow},
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

/// Creates a product sold by `seller_id`, with its initial stock, all or nothing. A SKU already
/// in use is `SkuTaken`, recognised from the unique constraint the insert violates.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(seller_id = seller_id, sku = %new.sku.as_str())
)]
pub async fn create_product(
    db: &DatabaseConnection,
    seller_id: i64,
    new: NewProduct,
) -> Result<Product, ServiceError> {
    new.price.ensure_price()?;
    with_retry(RetryPolicy::reconnecting(), || {
        create_once(db, seller_id, &new)
    })
    .await
}

async fn create_once(
    db: &DatabaseConnection,
    seller_id: i64,
    new: &NewProduct,
) -> Result<Product, ServiceError> {
    let now = super::now();
    let txn = begin_write(db).await?;
    let result = repo::products::insert(&txn, seller_id, new, now)
        .await
        .map_err(sku_taken_or_unexpected);
    let id = finish(txn, result).await?;

    tracing::info!(product_id = id, seller_id, "created a product");
    Ok(Product {
        id,
        sku: new.sku.as_str().to_owned(),
        name: new.name.as_str().to_owned(),
        price: new.price,
        stock: new.stock.get(),
        seller_id,
        created_at: now.to_utc(),
    })
}

fn sku_taken_or_unexpected(error: DbErr) -> ServiceError {
    match DbFailure::of(&error) {
        failure if failure.violates(&repo::products::SKU_UNIQUE) => ServiceError::SkuTaken,
        // The seller is the authenticated caller, so this means the user was just deleted.
        DbFailure::ForeignKeyViolation { .. } => ServiceError::NotFound { resource: "user" },
        _ => error.into(),
    }
}

/// One product with its stock, in one statement (a join).
#[tracing::instrument(level = "info", skip_all, fields(product_id = id))]
pub async fn get_product(db: &DatabaseConnection, id: i64) -> Result<Product, ServiceError> {
    let row = with_retry_idempotent(RetryPolicy::default(), || async move {
        Ok(repo::products::find_with_stock(reader(db), id).await?)
    })
    .await?
    .ok_or(ServiceError::NotFound {
        resource: "product",
    })?;
    product_from_row(row)
}

/// One page of products whose name contains `query.q` (ignoring case; `%`, `_` and `\` match
/// themselves), sorted as asked with the id as tie-breaker, and how many match in all. Two
/// statements in one read transaction, so that the page and the total agree even while
/// products are being added.
// The search text is unvalidated user input here, not an id: it stays out of the span.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(limit = query.limit, offset = query.offset)
)]
pub async fn search_products(
    db: &DatabaseConnection,
    query: ProductQuery,
) -> Result<ProductPage, ServiceError> {
    query.validate()?;
    with_retry_idempotent(RetryPolicy::default(), || search_once(db, &query)).await
}

async fn search_once(
    db: &DatabaseConnection,
    query: &ProductQuery,
) -> Result<ProductPage, ServiceError> {
    let txn = begin_read(db).await?;
    let search = repo::products::Search {
        name_contains: query.q.as_deref(),
        sort: query.sort,
        order: query.order,
        limit: query.limit,
        offset: query.offset,
    };
    let rows = repo::products::search(&txn, &search).await?;
    let total = repo::products::count(&txn, search.name_contains).await?;
    commit(txn).await?;
    let products = rows
        .into_iter()
        .map(product_from_row)
        .collect::<Result<_, _>>()?;
    Ok(ProductPage { products, total })
}

fn product_from_row(row: ProductRow) -> Result<Product, ServiceError> {
    Ok(Product {
        id: row.id,
        sku: row.sku,
        name: row.name,
        price: Money::from_stored(row.price)?,
        stock: row.stock,
        seller_id: row.seller_id,
        created_at: row.created_at.to_utc(),
    })
}
