//! Operations on money: deposits and transfers between users.
//!
//! No balance goes below zero and no update is lost, however many of these run at once: every
//! change is a conditional `UPDATE` computed in SQL (see [`crate::repo::accounts`]), and a
//! transfer touches its two accounts in ascending user id, the order every operation that moves
//! money between accounts uses, so two transfers in opposite directions cannot deadlock.
//!
//! Both take an optional idempotency key, with the rules orders follow: the same key from the
//! same user with the same request answers with the first result (the balance as it was then)
//! and moves no money; with another request it is `IdempotencyKeyReused`; only a success binds
//! a key. Racing requests with one key are settled by the key's unique index: the loser rolls
//! back and answers from the row the winner committed. Where the row goes differs:
//!
//! * a transfer's ledger row goes first and claims the key before any money moves, because the
//!   first of two racing transfers may spend the money the second would need — the second must
//!   replay, not be refused for insufficient funds;
//! * a deposit's ledger row goes last, complete with the balance it left. Racing deposits of one
//!   user queue on the account's row lock, and nothing the first does can make the second's
//!   credit fail (short of a balance past the largest one the column holds), so the loser
//!   reaches the insert, meets the winner's committed key there and rolls its credit back.

use entity::{deposits, transfers};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{
    ServiceError,
    db::{begin_write, commit, finish},
    domain::{
        money::{Money, Transfer},
        orders::IdempotencyKey,
    },
    error::DbFailure,
    repo,
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

/// Adds `amount` (more than 0, at most 1000000.00) to the user's balance and records the
/// deposit; returns the new balance. With an idempotency key this user already deposited with:
/// the same amount returns the balance that deposit left and changes nothing, another amount is
/// `IdempotencyKeyReused`.
// The key is the client's own text, not an id: only whether there is one is recorded.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(user_id = user_id, amount = %amount, keyed = idempotency_key.is_some())
)]
pub async fn deposit(
    db: &DatabaseConnection,
    user_id: i64,
    amount: Money,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Money, ServiceError> {
    let amount = amount.ensure_amount()?;
    let key = idempotency_key.as_ref().map(IdempotencyKey::as_str);
    // With a key, running it again is safe even when a COMMIT's outcome is unknown: the next
    // run finds the committed deposit by its key and answers with it. Without one, it is not.
    let attempt = || deposit_once(db, user_id, amount, key);
    if key.is_some() {
        with_retry_idempotent(RetryPolicy::default(), attempt).await
    } else {
        with_retry(RetryPolicy::reconnecting(), attempt).await
    }
}

async fn deposit_once(
    db: &DatabaseConnection,
    user_id: i64,
    amount: Money,
    key: Option<&str>,
) -> Result<Money, ServiceError> {
    let now = super::now();
    let txn = begin_write(db).await?;

    // A key seen before: answer from the first deposit, changing nothing.
    if let Some(key) = key
        && let Some(first) = repo::deposits::find_by_key(&txn, user_id, key).await?
    {
        txn.rollback().await?;
        return replay_deposit(&first, amount);
    }

    if !repo::accounts::credit(&txn, user_id, amount, now).await? {
        return finish(txn, Err(ServiceError::NotFound { resource: "user" })).await;
    }
    let balance = balance_of(&txn, user_id).await?;
    let deposit_id = match repo::deposits::insert(&txn, user_id, amount, balance, key, now).await {
        Ok(id) => id,
        Err(error) if DbFailure::of(&error).violates(&repo::deposits::IDEMPOTENCY_KEY_UNIQUE) => {
            // A concurrent deposit with this key committed first. Undo the credit, then
            // answer from its row.
            txn.rollback().await?;
            return replay_committed_deposit(db, user_id, key, amount).await;
        }
        Err(error) => return Err(error.into()),
    };
    commit(txn).await?;

    tracing::info!(deposit_id, user_id, %amount, "deposited money");
    Ok(balance)
}

/// The balance the first deposit with a key left, if `amount` is what it deposited.
fn replay_deposit(first: &deposits::Model, amount: Money) -> Result<Money, ServiceError> {
    if Money::from_stored(first.amount)? != amount {
        return Err(ServiceError::IdempotencyKeyReused);
    }
    Money::from_stored(first.balance_after)
}

/// Reads the deposit a concurrent request committed with `key`, after losing the race to it:
/// one statement, on the pool (the primary), since a committed deposit never changes.
async fn replay_committed_deposit(
    db: &DatabaseConnection,
    user_id: i64,
    key: Option<&str>,
    amount: Money,
) -> Result<Money, ServiceError> {
    let winner = match key {
        Some(key) => repo::deposits::find_by_key(db, user_id, key).await?,
        None => None,
    };
    tracing::debug!(
        user_id,
        "lost the race for an idempotency key; answering from the deposit that won"
    );
    let winner = winner.ok_or_else(|| ServiceError::Unexpected {
        context: "replaying an idempotent deposit",
        source: "the deposit holding the idempotency key could not be read".into(),
    })?;
    replay_deposit(&winner, amount)
}

/// Moves `amount` from one user's account to another's and records it in the ledger, all or
/// nothing. Not enough money is `InsufficientFunds`; an unknown recipient is `NotFound`; a
/// transfer to oneself is a validation error on `to_user_id`. With an idempotency key the
/// sender already transferred with: the same recipient and amount return the first transfer
/// (with the sender's balance as it was then) and change nothing, anything else is
/// `IdempotencyKeyReused`.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(
        from_user_id = from_user_id,
        to_user_id = to_user_id,
        amount = %amount,
        keyed = idempotency_key.is_some(),
    )
)]
pub async fn transfer(
    db: &DatabaseConnection,
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
    idempotency_key: Option<IdempotencyKey>,
) -> Result<Transfer, ServiceError> {
    let amount = amount.ensure_amount()?;
    if from_user_id == to_user_id {
        return Err(ServiceError::validation(
            "to_user_id",
            "must be another user than the sender",
        ));
    }
    let request = TransferRequest {
        from_user_id,
        to_user_id,
        amount,
        key: idempotency_key.as_ref().map(IdempotencyKey::as_str),
    };
    // As for deposits: only a key makes a transfer whose COMMIT went unanswered safe to rerun.
    let attempt = || transfer_once(db, &request);
    if request.key.is_some() {
        with_retry_idempotent(RetryPolicy::default(), attempt).await
    } else {
        with_retry(RetryPolicy::reconnecting(), attempt).await
    }
}

/// What a transfer was asked to do.
struct TransferRequest<'a> {
    from_user_id: i64,
    to_user_id: i64,
    amount: Money,
    key: Option<&'a str>,
}

async fn transfer_once(
    db: &DatabaseConnection,
    request: &TransferRequest<'_>,
) -> Result<Transfer, ServiceError> {
    let &TransferRequest {
        from_user_id,
        to_user_id,
        amount,
        key,
    } = request;
    let now = super::now();
    let txn = begin_write(db).await?;

    // A key seen before: answer from the first transfer, changing nothing.
    if let Some(key) = key
        && let Some(first) = repo::transfers::find_by_key(&txn, from_user_id, key).await?
    {
        txn.rollback().await?;
        return replay_transfer(first, request);
    }

    // The ledger row goes first: it claims the idempotency key before any money moves.
    let id = match repo::transfers::insert(&txn, from_user_id, to_user_id, amount, key, now).await {
        Ok(id) => id,
        Err(error) => {
            let failure = DbFailure::of(&error);
            if failure.violates(&repo::transfers::IDEMPOTENCY_KEY_UNIQUE) {
                // A concurrent transfer with this key committed first. Undo, then answer from it.
                txn.rollback().await?;
                return replay_committed_transfer(db, request).await;
            }
            // Both foreign keys name users, and the sender is the caller: the recipient does not
            // exist. (SQLite does not say which foreign key failed.)
            let refusal = if matches!(failure, DbFailure::ForeignKeyViolation { .. }) {
                ServiceError::NotFound { resource: "user" }
            } else {
                error.into()
            };
            return finish(txn, Err(refusal)).await;
        }
    };

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
    // Both were tried, so the answer does not depend on which id is lower. The rollback undoes
    // the ledger row and whichever of the two updates did happen.
    if !credited {
        return finish(txn, Err(ServiceError::NotFound { resource: "user" })).await;
    }
    if !debited {
        return finish(txn, Err(ServiceError::InsufficientFunds)).await;
    }

    let sender_balance = balance_of(&txn, from_user_id).await?;
    repo::transfers::record_sender_balance(&txn, id, sender_balance).await?;
    commit(txn).await?;

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

/// The first transfer made with a key, if `request` asks for what it did.
fn replay_transfer(
    first: transfers::Model,
    request: &TransferRequest<'_>,
) -> Result<Transfer, ServiceError> {
    let first = transfer_from(first)?;
    if first.matches_request(request.to_user_id, request.amount) {
        Ok(first)
    } else {
        Err(ServiceError::IdempotencyKeyReused)
    }
}

/// Reads the transfer a concurrent request committed with the request's key, after losing the
/// race to it: one statement, on the pool (the primary), since a committed transfer never
/// changes.
async fn replay_committed_transfer(
    db: &DatabaseConnection,
    request: &TransferRequest<'_>,
) -> Result<Transfer, ServiceError> {
    let winner = match request.key {
        Some(key) => repo::transfers::find_by_key(db, request.from_user_id, key).await?,
        None => None,
    };
    tracing::debug!(
        from_user_id = request.from_user_id,
        "lost the race for an idempotency key; answering from the transfer that won"
    );
    let winner = winner.ok_or_else(|| ServiceError::Unexpected {
        context: "replaying an idempotent transfer",
        source: "the transfer holding the idempotency key could not be read".into(),
    })?;
    replay_transfer(winner, request)
}

/// A recorded transfer as the service answers with it. Only transfers recorded before the
/// sender's balance was written down lack it, and none of those has a key to replay.
fn transfer_from(row: transfers::Model) -> Result<Transfer, ServiceError> {
    let sender_balance = row
        .sender_balance_after
        .ok_or_else(|| ServiceError::Unexpected {
            context: "replaying an idempotent transfer",
            source: format!("transfer {} has no recorded sender balance", row.id).into(),
        })?;
    Ok(Transfer {
        id: row.id,
        from_user_id: row.from_user_id,
        to_user_id: row.to_user_id,
        amount: Money::from_stored(row.amount)?,
        created_at: row.created_at.to_utc(),
        sender_balance: Money::from_stored(sender_balance)?,
    })
}

async fn balance_of<C: ConnectionTrait>(db: &C, user_id: i64) -> Result<Money, ServiceError> {
    let account = repo::accounts::find(db, user_id)
        .await?
        .ok_or(ServiceError::NotFound { resource: "user" })?;
    Money::from_stored(account.balance)
}
