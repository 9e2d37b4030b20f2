//! The transfers repository: the ledger of money moved between accounts.

use chrono::{DateTime, FixedOffset};
use entity::transfers;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::{domain::money::Money, error::UniqueConstraint};

/// A sender uses an idempotency key for one transfer only.
pub const IDEMPOTENCY_KEY_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_transfers_from_user_id_idempotency_key",
    table: "transfers",
    columns: &["from_user_id", "idempotency_key"],
};

/// Records a transfer, without the sender's balance after it (see [`record_sender_balance`]),
/// and returns its id. With a key the sender already used, this fails with a unique violation
/// of [`IDEMPOTENCY_KEY_UNIQUE`] — on PostgreSQL after waiting for the transaction that holds
/// the key to end, which is what makes two racing requests with one key safe. A recipient who
/// does not exist fails the foreign key `fk_transfers_to_user_id`.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
    idempotency_key: Option<&str>,
    created_at: DateTime<FixedOffset>,
) -> Result<i64, DbErr> {
    let inserted = transfers::Entity::insert(transfers::ActiveModel {
        from_user_id: Set(from_user_id),
        to_user_id: Set(to_user_id),
        amount: Set(amount.as_decimal()),
        idempotency_key: Set(idempotency_key.map(str::to_owned)),
        sender_balance_after: Set(None),
        created_at: Set(created_at),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(inserted.last_insert_id)
}

/// Writes down the sender's balance right after transfer `id`, which a replay answers with.
pub async fn record_sender_balance<C: ConnectionTrait>(
    db: &C,
    id: i64,
    balance: Money,
) -> Result<(), DbErr> {
    transfers::Entity::update_many()
        .col_expr(
            transfers::Column::SenderBalanceAfter,
            Expr::val(balance.as_decimal()),
        )
        .filter(transfers::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The sender's transfer made with idempotency key `key`, if any: keys belong to their sender.
pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    from_user_id: i64,
    key: &str,
) -> Result<Option<transfers::Model>, DbErr> {
    transfers::Entity::find()
        .filter(transfers::Column::FromUserId.eq(from_user_id))
        .filter(transfers::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}
