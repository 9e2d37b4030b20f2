//! The accounts repository: every balance change is one conditional `UPDATE` computed in SQL.
//!
//! Reading a balance, deciding in Rust and writing it back would lose updates when two
//! transactions interleave. Here the database does the arithmetic and the check in the same
//! statement — `SET balance = ROUND(balance - $1, 2) WHERE user_id = $2 AND balance >= $1` — so
//! the row lock it takes makes concurrent debits queue, and the second one re-checks the balance
//! the first one left. The caller learns from the affected-row count whether it happened.
//! `ROUND(…, 2)` keeps SQLite, which stores money as REAL, exact to the cent; on PostgreSQL's
//! `numeric` it changes nothing.
//!
//! Callers that touch several accounts in one transaction must do so in ascending user id, so
//! that two transactions never wait for each other's locks in opposite orders (a deadlock). An
//! order's settlement touches all its accounts in one statement instead ([`settle`]), which
//! locks them in the order its scan meets them: on PostgreSQL an index scan of the `IN` list,
//! whose keys it sorts, so ascending as well.

use chrono::{DateTime, FixedOffset};
use entity::accounts;
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, UpdateMany,
    sea_query::{CaseStatement, Expr, ExprTrait, Func},
};

use crate::domain::money::Money;

/// Opens `user_id`'s account with a balance of zero.
pub async fn open<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    updated_at: DateTime<FixedOffset>,
) -> Result<(), DbErr> {
    accounts::Entity::insert(accounts::ActiveModel {
        user_id: Set(user_id),
        balance: Set(Money::ZERO.as_decimal()),
        updated_at: Set(updated_at),
    })
    .exec(db)
    .await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
) -> Result<Option<accounts::Model>, DbErr> {
    accounts::Entity::find_by_id(user_id).one(db).await
}

/// Adds `amount` to the balance. `false`: there is no such account.
pub async fn credit<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    amount: Money,
    now: DateTime<FixedOffset>,
) -> Result<bool, DbErr> {
    let new_balance = Expr::col(accounts::Column::Balance).add(amount.as_decimal());
    let updated = accounts::Entity::update_many()
        .col_expr(accounts::Column::Balance, to_cents(new_balance))
        .col_expr(accounts::Column::UpdatedAt, Expr::val(now))
        .filter(accounts::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Takes `amount` from the balance if the balance covers it. `false`: it does not, or there is
/// no such account; nothing changed.
pub async fn debit_if_covered<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    amount: Money,
    now: DateTime<FixedOffset>,
) -> Result<bool, DbErr> {
    let updated = guarded_debit(user_id, amount, now).exec(db).await?;
    Ok(updated.rows_affected == 1)
}

/// `UPDATE accounts SET balance = ROUND(balance - $1, $2), updated_at = $3 WHERE user_id = $4
/// AND balance >= $5` (with `$2` = 2 and `$5` = `$1`): the check and the change in one statement.
fn guarded_debit(
    user_id: i64,
    amount: Money,
    now: DateTime<FixedOffset>,
) -> UpdateMany<accounts::Entity> {
    let new_balance = Expr::col(accounts::Column::Balance).sub(amount.as_decimal());
    accounts::Entity::update_many()
        .col_expr(accounts::Column::Balance, to_cents(new_balance))
        .col_expr(accounts::Column::UpdatedAt, Expr::val(now))
        .filter(accounts::Column::UserId.eq(user_id))
        .filter(accounts::Column::Balance.gte(amount.as_decimal()))
}

/// One account's part in a settlement: its balance moves by `delta` (negative: money leaves),
/// provided the balance is at least `required` beforehand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceChange {
    pub user_id: i64,
    pub delta: Decimal,
    pub required: Money,
}

/// Applies every change in one statement: `UPDATE accounts SET balance = ROUND(balance + CASE
/// WHEN user_id = $1 THEN $2 … END, 2), updated_at = $n WHERE user_id IN (…) AND balance >=
/// CASE WHEN user_id = $1 THEN $3 … END`. `true`: every account exists and was covered. `false`:
/// some did not qualify, and the accounts that did have changed — the caller must roll back.
/// `changes` must name each account once.
pub async fn settle<C: ConnectionTrait>(
    db: &C,
    changes: &[BalanceChange],
    now: DateTime<FixedOffset>,
) -> Result<bool, DbErr> {
    if changes.is_empty() {
        return Ok(true);
    }
    let updated = settlement(changes, now).exec(db).await?;
    Ok(updated.rows_affected == changes.len() as u64)
}

fn settlement(
    changes: &[BalanceChange],
    now: DateTime<FixedOffset>,
) -> UpdateMany<accounts::Entity> {
    let per_account = |value: fn(&BalanceChange) -> Decimal| {
        changes.iter().fold(CaseStatement::new(), |case, change| {
            case.case(accounts::Column::UserId.eq(change.user_id), value(change))
        })
    };
    let new_balance = Expr::col(accounts::Column::Balance).add(per_account(|c| c.delta));
    accounts::Entity::update_many()
        .col_expr(accounts::Column::Balance, to_cents(new_balance))
        .col_expr(accounts::Column::UpdatedAt, Expr::val(now))
        .filter(accounts::Column::UserId.is_in(changes.iter().map(|c| c.user_id)))
        .filter(
            Expr::col((accounts::Entity, accounts::Column::Balance))
                .gte(per_account(|c| c.required.as_decimal())),
        )
}

/// The accounts of these users that exist.
pub async fn find_many<C: ConnectionTrait>(
    db: &C,
    user_ids: impl IntoIterator<Item = i64>,
) -> Result<Vec<accounts::Model>, DbErr> {
    accounts::Entity::find()
        .filter(accounts::Column::UserId.is_in(user_ids))
        .all(db)
        .await
}

/// `ROUND(expr, 2)`.
fn to_cents(expr: Expr) -> Expr {
    Func::round_with_precision(expr, 2).into()
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    use super::*;

    #[test]
    fn a_debit_is_one_update_that_checks_the_balance_and_rounds_to_cents() {
        let amount = Money::amount("12.50").unwrap();
        let now = chrono::Utc::now().fixed_offset();
        let statement = guarded_debit(7, amount, now).build(DbBackend::Postgres);
        assert_eq!(
            statement.sql,
            r#"UPDATE "accounts" SET "balance" = ROUND("balance" - $1, $2), "updated_at" = $3 WHERE "accounts"."user_id" = $4 AND "accounts"."balance" >= $5"#
        );
    }

    #[test]
    fn a_settlement_is_one_update_with_a_delta_and_a_guard_per_account() {
        let now = chrono::Utc::now().fixed_offset();
        let changes = [
            BalanceChange {
                user_id: 3,
                delta: Decimal::new(-1250, 2),
                required: Money::amount("12.50").unwrap(),
            },
            BalanceChange {
                user_id: 9,
                delta: Decimal::new(1250, 2),
                required: Money::ZERO,
            },
        ];
        let statement = settlement(&changes, now).build(DbBackend::Postgres);
        assert_eq!(
            statement.sql,
            r#"UPDATE "accounts" SET "balance" = ROUND("balance" + (CASE WHEN ("accounts"."user_id" = $1) THEN $2 WHEN ("accounts"."user_id" = $3) THEN $4 END), $5), "updated_at" = $6 WHERE "accounts"."user_id" IN ($7, $8) AND "accounts"."balance" >= (CASE WHEN ("accounts"."user_id" = $9) THEN $10 WHEN ("accounts"."user_id" = $11) THEN $12 END)"#
        );
    }
}
