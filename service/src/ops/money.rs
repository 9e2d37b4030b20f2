//! Operations on money: deposits and transfers between users.
//!
//! No balance goes below zero and no update is lost, however many of these run at once: every
//! change is a conditional `UPDATE` computed in SQL (see [`crate::repo::accounts`]), and a
//! transfer touches its two accounts in ascending user id, the order every operation that moves
//! money between accounts uses, so two transfers in opposite directions cannot deadlock.

use sea_orm::DatabaseConnection;

use crate::{
    ServiceError,
    db::begin_write,
    domain::money::{Money, Transfer},
    repo,
    retry::{RetryPolicy, with_retry},
};

/// Adds `amount` (more than 0, at most 1000000.00) to the user's balance; returns the new balance.
#[tracing::instrument(level = "info", skip_all, fields(user_id = user_id, amount = %amount))]
pub async fn deposit(
    db: &DatabaseConnection,
    user_id: i64,
    amount: Money,
) -> Result<Money, ServiceError> {
    let amount = amount.ensure_amount()?;
    with_retry(RetryPolicy::default(), || deposit_once(db, user_id, amount)).await
}

async fn deposit_once(
    db: &DatabaseConnection,
    user_id: i64,
    amount: Money,
) -> Result<Money, ServiceError> {
    let txn = begin_write(db).await?;
    if !repo::accounts::credit(&txn, user_id, amount, super::now()).await? {
        return Err(ServiceError::NotFound { resource: "user" });
    }
    let balance = balance_of(&txn, user_id).await?;
    txn.commit().await?;
    Ok(balance)
}

/// Moves `amount` from one user's account to another's and records it in the ledger, all or
/// nothing. Not enough money is `InsufficientFunds`; an unknown recipient is `NotFound`; a
/// transfer to oneself is a validation error on `to_user_id`.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(from_user_id = from_user_id, to_user_id = to_user_id, amount = %amount)
)]
pub async fn transfer(
    db: &DatabaseConnection,
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
) -> Result<Transfer, ServiceError> {
    let amount = amount.ensure_amount()?;
    if from_user_id == to_user_id {
        return Err(ServiceError::validation(
            "to_user_id",
            "must be another user than the sender",
        ));
    }
    with_retry(RetryPolicy::default(), || {
        transfer_once(db, from_user_id, to_user_id, amount)
    })
    .await
}

async fn transfer_once(
    db: &DatabaseConnection,
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
) -> Result<Transfer, ServiceError> {
    let now = super::now();
    let txn = begin_write(db).await?;

    // Lock order: the lower user id first, whichever way the money goes.
    let (debited, credited) = if from_user_id < to_user_id {
        let debited = repo::accounts::debit_if_covered(&txn, from_user_id, amount, now).await?;
        let credited = repo::accounts::credit(&txn, to_user_id, amount, now).await?;
        (debited, credited)
    } else {
        let credited = repo::accounts::credit(&txn, to_user_id, amount, now).await?;
        let debited = repo::accounts::debit_if_covered(&txn, from_user_id, amount, now).await?;
        (debited, credited)
    };
    // Both were tried, so the answer does not depend on which id is lower. Returning drops the
    // transaction, which rolls back whichever of the two updates did happen.
    if !credited {
        return Err(ServiceError::NotFound { resource: "user" });
    }
    if !debited {
        return Err(ServiceError::InsufficientFunds);
    }

    let id = repo::transfers::insert(&txn, from_user_id, to_user_id, amount, now).await?;
    let sender_balance = balance_of(&txn, from_user_id).await?;
    txn.commit().await?;

    tracing::info!(transfer_id = id, from_user_id, to_user_id, %amount, "transferred money");
    Ok(Transfer {
        id,
        from_user_id,
        to_user_id,
        amount,
        created_at: now.to_utc(),
        sender_balance,
    })
}

async fn balance_of<C: sea_orm::ConnectionTrait>(
    db: &C,
    user_id: i64,
) -> Result<Money, ServiceError> {
    let account = repo::accounts::find(db, user_id)
        .await?
        .ok_or(ServiceError::NotFound { resource: "user" })?;
    Money::from_stored(account.balance)
}
