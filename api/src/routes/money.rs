//! Money: deposits into one's own account and transfers to another user's, each safely
//! repeatable with an `Idempotency-Key`.
//!
//! Amounts travel as decimal strings (`"7"`, `"7.5"`, `"12.50"`), never as JSON numbers, and
//! come back with two decimal places. A JSON number where an amount belongs is a 422 naming the
//! field, like any value of the wrong type.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use service::domain::money::{Money, Transfer};
use utoipa::ToSchema;

use super::idempotency::{IdempotencyHeader, idempotency_key};
use crate::{
    ApiError, AppState, Problem,
    auth::AuthUser,
    extract::{Integer, Json},
    schemas,
};

/// `POST /me/deposits`: how much to add to one's balance. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepositRequest {
    #[schema(schema_with = schemas::amount)]
    amount: String,
}

/// A balance after a deposit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BalanceBody {
    #[schema(value_type = String, example = "125.50")]
    balance: Money,
}

/// `POST /transfers`: whom to pay, and how much. Unknown fields are refused (422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    #[schema(schema_with = schemas::to_user_id)]
    to_user_id: Integer,
    #[schema(schema_with = schemas::amount)]
    amount: String,
}

/// A completed transfer, and what the sender has left.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TransferBody {
    id: i64,
    from_user_id: i64,
    to_user_id: i64,
    #[schema(value_type = String, example = "10.00")]
    amount: Money,
    /// The sender's balance right after the transfer.
    #[schema(value_type = String, example = "115.50")]
    balance: Money,
}

impl From<Transfer> for TransferBody {
    fn from(transfer: Transfer) -> Self {
        TransferBody {
            id: transfer.id,
            from_user_id: transfer.from_user_id,
            to_user_id: transfer.to_user_id,
            amount: transfer.amount,
            balance: transfer.sender_balance,
        }
    }
}

/// Adds money to the caller's balance.
///
/// With an `Idempotency-Key`, repeating the request (also concurrently) answers with the balance
/// the first deposit left, and deposits nothing again; the same key with another amount is 422
/// `idempotency_key_reused`. Only a successful deposit binds its key.
#[utoipa::path(
    post,
    path = "/me/deposits",
    tag = "money",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = DepositRequest,
    responses(
        (
            status = 200,
            description = "The new balance, or the balance the deposit this key made left.",
            body = BalanceBody,
        ),
        (
            status = 422,
            description = "`validation_failed`: a malformed or out-of-range amount, or a bad \
                           `Idempotency-Key`; `detail` names the field. Or \
                           `idempotency_key_reused`: the key made a deposit of another amount.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn deposit(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Json(body): Json<DepositRequest>,
) -> Result<Json<BalanceBody>, ApiError> {
    let amount = Money::amount(&body.amount)?;
    let key = idempotency_key(&headers)?;
    let balance = service::ops::money::deposit(&state.db, user.id, amount, key).await?;
    Ok(Json(BalanceBody { balance }))
}

/// Moves money from the caller's balance to another user's, all or nothing.
///
/// With an `Idempotency-Key`, repeating the request (also concurrently) answers with the first
/// transfer — 201, the same id, the caller's balance as it was right after it — and moves no
/// money again; the same key with another recipient or amount is 422 `idempotency_key_reused`.
/// Only a successful transfer binds its key: after a 404 or 409 the key may be used again.
#[utoipa::path(
    post,
    path = "/transfers",
    tag = "money",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = TransferRequest,
    responses(
        (
            status = 201,
            description = "Transferred, or the transfer this key made before.",
            body = TransferBody,
        ),
        (
            status = 404,
            description = "`not_found`: no user has `to_user_id`.",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (
            status = 409,
            description = "`insufficient_funds`: the caller's balance does not cover the amount.",
            body = Problem,
            content_type = "application/problem+json",
        ),
        (
            status = 422,
            description = "`validation_failed`: a malformed or out-of-range amount, a transfer \
                           to oneself, or a bad `Idempotency-Key`; `detail` names the field. Or \
                           `idempotency_key_reused`: the key made a transfer to another \
                           recipient or of another amount.",
            body = Problem,
            content_type = "application/problem+json",
        ),
    ),
)]
pub(crate) async fn transfer(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Json(body): Json<TransferRequest>,
) -> Result<(StatusCode, Json<TransferBody>), ApiError> {
    let amount = Money::amount(&body.amount)?;
    let key = idempotency_key(&headers)?;
    let transfer =
        service::ops::money::transfer(&state.db, user.id, body.to_user_id.0, amount, key).await?;
    Ok((StatusCode::CREATED, Json(transfer.into())))
}
