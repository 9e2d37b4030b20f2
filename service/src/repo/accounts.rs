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
//! that two transactions never wait for each other's locks in opposite orders (a deadlock).

use chrono::{DateTime, FixedOffset};
use entity::accounts;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, UpdateMany,
    sea_query::{Expr, ExprTrait, Func},
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
}
