//! The deposits repository: the ledger of money paid into accounts, each row with the balance it
//! left and, when the request had one, its idempotency key.

use chrono::{DateTime, FixedOffset};
use entity::deposits;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use crate::{domain::money::Money, error::UniqueConstraint};

/// A user uses an idempotency key for one deposit only.
pub const IDEMPOTENCY_KEY_UNIQUE: UniqueConstraint = UniqueConstraint {
    name: "uq_deposits_user_id_idempotency_key",
    table: "deposits",
    columns: &["user_id", "idempotency_key"],
};

/// Records a deposit and returns its id. With a key the user already used, this fails with a
/// unique violation of [`IDEMPOTENCY_KEY_UNIQUE`].
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    amount: Money,
    balance_after: Money,
    idempotency_key: Option<&str>,
    created_at: DateTime<FixedOffset>,
) -> Result<i64, DbErr> {
    let inserted = deposits::Entity::insert(deposits::ActiveModel {
        user_id: Set(user_id),
        amount: Set(amount.as_decimal()),
        balance_after: Set(balance_after.as_decimal()),
        idempotency_key: Set(idempotency_key.map(str::to_owned)),
        created_at: Set(created_at),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(inserted.last_insert_id)
}

/// The user's deposit made with idempotency key `key`, if any: keys belong to their user.
pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    key: &str,
) -> Result<Option<deposits::Model>, DbErr> {
    deposits::Entity::find()
        .filter(deposits::Column::UserId.eq(user_id))
        .filter(deposits::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}
