//! Orders: placing one (safely repeatable with an `Idempotency-Key`), cancelling it, and
//! reading one's own. Someone else's order is 404, exactly like one that does not exist.

use axum::{extract::State, http::HeaderMap, response::Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service::domain::{
    money::Money,
    orders::{Order, OrderItem, OrderLines, OrderStatus, PlaceOrder, Quantity},
};
use utoipa::ToSchema;

use super::{
    created,
    idempotency::{IdempotencyHeader, idempotency_key},
    in_field,
};
use crate::{
    ApiError, AppState, Problem,
    auth::AuthUser,
    extract::{Integer, Json, Path},
    read_after::{ReadAfter, ReadAfterHeader},
    schemas,
};

/// `POST /orders`: what to buy. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"product_id": 1, "quantity": 2}, {"product_id": 3, "quantity": 1}]}))]
pub(crate) struct PlaceOrderRequest {
    #[schema(schema_with = schemas::order_items)]
    items: Vec<LineRequest>,
}

/// One line of `POST /orders`. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineRequest {
    #[schema(schema_with = schemas::product_id)]
    product_id: Integer,
    #[schema(schema_with = schemas::quantity)]
    quantity: Integer,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderStatusBody {
    Paid,
    Cancelled,
}

impl From<OrderStatus> for OrderStatusBody {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Paid => OrderStatusBody::Paid,
            OrderStatus::Cancelled => OrderStatusBody::Cancelled,
        }
    }
}

/// An order as its buyer sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderBody {
    id: i64,
    status: OrderStatusBody,
    /// The sum of the lines at the prices paid.
    #[schema(value_type = String, example = "37.50")]
    total: Money,
    created_at: DateTime<Utc>,
    /// In the order they were sent.
    items: Vec<OrderItemBody>,
}

/// A line of an order, at the price paid.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderItemBody {
    product_id: i64,
    /// The product's name.
    name: String,
    quantity: i32,
    #[schema(value_type = String, example = "12.50")]
    unit_price: Money,
}

impl From<Order> for OrderBody {
    fn from(order: Order) -> Self {
        OrderBody {
            id: order.id,
            status: order.status.into(),
            total: order.total,
            created_at: order.created_at,
            items: order.items.into_iter().map(OrderItemBody::from).collect(),
        }
    }
}

impl From<OrderItem> for OrderItemBody {
    fn from(item: OrderItem) -> Self {
        OrderItemBody {
            product_id: item.product_id,
            name: item.name,
            quantity: item.quantity,
            unit_price: item.unit_price,
        }
    }
}

/// The caller's orders.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderListBody {
    /// Newest first, each with its items.
    orders: Vec<OrderBody>,
}

impl PlaceOrderRequest {
    /// The service's lines; a bad quantity is named by its place (`items[2].quantity`).
    fn into_lines(self) -> Result<OrderLines, ApiError> {
        let lines = self
            .items
            .into_iter()
            .enumerate()
            .map(|(index, line)| {
                Quantity::new(line.quantity.0)
                    .map(|quantity| (line.product_id.0, quantity))
                    .map_err(|error| in_field(&format!("items[{index}].quantity"), error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrderLines::new(lines)?)
    }
}

/// Buys the lines, in one transaction: stock falls, the caller pays the total at the products'
/// current prices and each seller is paid their share — or, on any failure, nothing changes.
///
/// With an `Idempotency-Key`, repeating the request (also concurrently) returns the first order,
/// 201 with the same id, and changes nothing; the same key with other lines is 422
/// `idempotency_key_reused`. Only a successful order binds its key.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = PlaceOrderRequest,
    responses(
        (
            status = 201,
            description = "Placed and paid, or the order this key placed before; `Location` \
                           names it.",
            body = OrderBody,
        ),
        (
            status = 404,
            description = "`not_found`: a product does not exist.",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (
            status = 409,
            description = "`insufficient_stock` (\"Insufficient stock for product <id>\") or \
                           `insufficient_funds`; nothing changed.",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (
            status = 422,
            description = "`validation_failed` (`detail` names the field, e.g. \
                           `items[0].quantity`), or `idempotency_key_reused`: the key placed an \
                           order with other lines.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn place_order(
    State(state): State<AppState>,
    AuthUser(buyer): AuthUser,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let request = PlaceOrder {
        lines: body.into_lines()?,
        idempotency_key: idempotency_key(&headers)?,
    };
    let order = service::ops::orders::place_order(&state.db, buyer.id, request).await?;
    let location = format!("/orders/{}", order.id);
    Ok(created(location, OrderBody::from(order)))
}

/// Cancels the caller's paid order, in one transaction: stock comes back, the caller is refunded
/// and each seller gives their share back — exactly once, however many cancels race.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Cancelled.", body = OrderBody),
        (
            status = 409,
            description = "`order_not_cancellable`: already cancelled, or a seller no longer \
                           has the money to give back; nothing changed.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn cancel_order(
    State(state): State<AppState>,
    AuthUser(buyer): AuthUser,
    Path(id): Path<i64>,
) -> Result<Json<OrderBody>, ApiError> {
    let order = service::ops::orders::cancel_order(&state.db, buyer.id, id).await?;
    Ok(Json(order.into()))
}

/// One of the caller's orders, with its items.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(ReadAfterHeader, ("id" = i64, Path, description = "The order's id.")),
    responses((status = 200, description = "The order.", body = OrderBody)),
)]
pub(crate) async fn get_order(
    State(state): State<AppState>,
    AuthUser(buyer): AuthUser,
    ReadAfter(after): ReadAfter,
    Path(id): Path<i64>,
) -> Result<Json<OrderBody>, ApiError> {
    let order = state
        .reads
        .read(after, |db| {
            service::ops::orders::get_order(db, buyer.id, id)
        })
        .await?;
    Ok(Json(order.into()))
}

/// The caller's orders, newest first, each with its items: the same statements for 2 orders as
/// for 2,000.
#[utoipa::path(
    get,
    path = "/me/orders",
    tag = "orders",
    params(ReadAfterHeader),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's orders.", body = OrderListBody)),
)]
pub(crate) async fn my_orders(
    State(state): State<AppState>,
    AuthUser(buyer): AuthUser,
    ReadAfter(after): ReadAfter,
) -> Result<Json<OrderListBody>, ApiError> {
    let orders = state
        .reads
        .read(after, |db| service::ops::orders::list_orders(db, buyer.id))
        .await?;
    Ok(Json(OrderListBody {
        orders: orders.into_iter().map(OrderBody::from).collect(),
    }))
}
