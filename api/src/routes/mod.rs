//! Every route of the API, and the fallbacks for requests no route takes.
//!
//! A route is added by writing its handler with a `#[utoipa::path(...)]` annotation in the module
//! of its resource and registering it below with `routes!`: that puts it in the router and in the
//! OpenAPI document at once, so the document cannot miss a path that exists.

mod conversations;
mod idempotency;
mod money;
mod operations;
mod orders;
mod products;
mod users;

#[cfg(test)]
pub(crate) use idempotency::{IDEMPOTENCY_KEY, idempotency_key};
/// Named by `schemas::order_items` (it is given there with `schema_with`, which registers
/// nothing), so it is registered with the document's fixed parts.
pub(crate) use orders::LineRequest;

use axum::{
    http::{Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use service::ServiceError;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiError, AppState, extract::Json, openapi::ApiDoc};

/// Every route, with the OpenAPI description of each.
pub(crate) fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::openapi_json))
        .routes(routes!(
            conversations::create_conversation,
            conversations::list_conversations
        ))
        .routes(routes!(conversations::get_conversation))
        .routes(routes!(
            conversations::post_message,
            conversations::list_messages
        ))
        .routes(routes!(users::register))
        .routes(routes!(users::get_user))
        .routes(routes!(users::me))
        .routes(routes!(money::deposit))
        .routes(routes!(money::transfer))
        .routes(routes!(products::create_product, products::search_products))
        .routes(routes!(products::get_product))
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::cancel_order))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::my_orders))
}

/// 201 Created with `body`, and `Location` naming the new resource (`/orders/7`).
pub(crate) fn created<T: Serialize>(location: String, body: T) -> Response {
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

/// No route has this path: 404 `not_found`, as a problem like any other error.
pub(crate) async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().to_owned(),
    }
}

/// The path exists but not for this method: 405 `method_not_allowed`; axum adds `Allow`.
pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

/// `error`, with the field a validation failure names replaced by `field`: for input whose place
/// in the request only the api knows (`items[2].quantity`, the `Idempotency-Key` header).
pub(crate) fn in_field(field: &str, error: ServiceError) -> ApiError {
    match error {
        ServiceError::Validation { message, .. } => {
            ApiError::InvalidInput(format!("{field}: {message}"))
        }
        other => other.into(),
    }
}
