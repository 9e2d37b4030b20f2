//! Products: selling one, reading one, and searching them all.

use axum::{extract::State, response::Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service::domain::{
    money::Money,
    products::{
        NewProduct, Product, ProductName, ProductPage, ProductQuery, ProductSort, Sku, SortOrder,
        Stock,
    },
};
use utoipa::{IntoParams, ToSchema};

use super::created;
use crate::{
    ApiError, AppState, Problem,
    auth::AuthUser,
    extract::{Integer, Json, Path, Query},
    read_after::{ReadAfter, ReadAfterHeader},
    schemas,
};

/// `POST /products`: what to sell; the caller is the seller. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "MUG-001", "name": "Blue mug", "price": "12.50", "stock": 20}))]
pub(crate) struct NewProductRequest {
    #[schema(schema_with = schemas::sku)]
    sku: String,
    #[schema(schema_with = schemas::product_name)]
    name: String,
    #[schema(schema_with = schemas::price)]
    price: String,
    #[schema(schema_with = schemas::stock)]
    stock: Integer,
}

/// A product with its current stock.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductBody {
    id: i64,
    sku: String,
    name: String,
    #[schema(value_type = String, example = "12.50")]
    price: Money,
    stock: i32,
    seller_id: i64,
    created_at: DateTime<Utc>,
}

impl From<Product> for ProductBody {
    fn from(product: Product) -> Self {
        ProductBody {
            id: product.id,
            sku: product.sku,
            name: product.name,
            price: product.price,
            stock: product.stock,
            seller_id: product.seller_id,
            created_at: product.created_at,
        }
    }
}

/// The query string of `GET /products`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    #[param(schema_with = schemas::search_text)]
    q: Option<String>,
    #[param(schema_with = schemas::product_sort)]
    sort: Option<String>,
    #[param(schema_with = schemas::sort_order)]
    order: Option<String>,
    #[param(schema_with = schemas::product_limit)]
    limit: Option<u64>,
    #[param(schema_with = schemas::product_offset)]
    offset: Option<u64>,
}

impl SearchParams {
    /// The service's query: defaults filled in, `sort` and `order` from their allowlists.
    fn into_query(self) -> Result<ProductQuery, ApiError> {
        let defaults = ProductQuery::default();
        Ok(ProductQuery {
            q: self.q,
            sort: self
                .sort
                .as_deref()
                .map(ProductSort::parse)
                .transpose()?
                .unwrap_or(defaults.sort),
            order: self
                .order
                .as_deref()
                .map(SortOrder::parse)
                .transpose()?
                .unwrap_or(defaults.order),
            limit: self.limit.unwrap_or(defaults.limit),
            offset: self.offset.unwrap_or(defaults.offset),
        })
    }
}

/// One page of products, and how many match in all.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductPageBody {
    products: Vec<ProductBody>,
    /// How many products match, across all pages.
    total: u64,
}

impl From<ProductPage> for ProductPageBody {
    fn from(page: ProductPage) -> Self {
        ProductPageBody {
            products: page.products.into_iter().map(ProductBody::from).collect(),
            total: page.total,
        }
    }
}

/// Puts a product on sale, with its initial stock; the caller is the seller.
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    security(("bearer" = [])),
    request_body = NewProductRequest,
    responses(
        (status = 201, description = "On sale; `Location` names the product.", body = ProductBody),
        (
            status = 409,
            description = "`sku_taken`: another product has this SKU.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    AuthUser(seller): AuthUser,
    Json(body): Json<NewProductRequest>,
) -> Result<Response, ApiError> {
    let new = NewProduct {
        sku: Sku::parse(body.sku)?,
        name: ProductName::parse(body.name)?,
        price: Money::price(&body.price)?,
        stock: Stock::new(body.stock.0)?,
    };
    let product = service::ops::products::create_product(&state.db, seller.id, new).await?;
    let location = format!("/products/{}", product.id);
    Ok(created(location, ProductBody::from(product)))
}

/// Searches products by name: one page, sorted as asked (ties broken by id), and the total.
/// Two statements, however many products there are.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(ReadAfterHeader, SearchParams),
    responses((status = 200, description = "A page of products.", body = ProductPageBody)),
)]
pub(crate) async fn search_products(
    State(state): State<AppState>,
    ReadAfter(after): ReadAfter,
    Query(params): Query<SearchParams>,
) -> Result<Json<ProductPageBody>, ApiError> {
    let query = params.into_query()?;
    let page = state
        .reads
        .read(after, |db| {
            service::ops::products::search_products(db, query.clone())
        })
        .await?;
    Ok(Json(page.into()))
}

/// One product, with its current stock.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(ReadAfterHeader, ("id" = i64, Path, description = "The product's id.")),
    responses((status = 200, description = "The product.", body = ProductBody)),
)]
pub(crate) async fn get_product(
    State(state): State<AppState>,
    ReadAfter(after): ReadAfter,
    Path(id): Path<i64>,
) -> Result<Json<ProductBody>, ApiError> {
    let product = state
        .reads
        .read(after, |db| service::ops::products::get_product(db, id))
        .await?;
    Ok(Json(product.into()))
}
