//! The transfers repository: the ledger of money moved between accounts.

use chrono::{DateTime, FixedOffset};
use entity::transfers;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};

use crate::domain::money::Money;

/// Records a transfer and returns its id.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
    created_at: DateTime<FixedOffset>,
) -> Result<i64, DbErr> {
    let inserted = transfers::Entity::insert(transfers::ActiveModel {
        from_user_id: Set(from_user_id),
        to_user_id: Set(to_user_id),
        amount: Set(amount.as_decimal()),
        created_at: Set(created_at),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(inserted.last_insert_id)
}
