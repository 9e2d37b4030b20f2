//! Deposits and transfers become safe to repeat with an `Idempotency-Key`, as orders are. A
//! replay answers with what the first request answered, so that answer must be stored, and the
//! key must sit in a unique index that two racing requests both meet:
//!
//! * `deposits`, new: the ledger of deposits (until now a deposit left no row, only a changed
//!   balance). One row per deposit, with the balance it left (`balance_after`, what a replay
//!   answers) and its key, unique per user.
//! * `transfers` gains the sender's key, unique per sender, and `sender_balance_after`, the
//!   balance its answer carries. That column is NULL for transfers recorded before this
//!   migration, whose balance after nobody wrote down; none of them has a key to replay.
//!
//! There is no request-fingerprint column: a deposit's body is its amount and a transfer's its
//! recipient and amount, and the rows store exactly those, so a repeated request is compared
//! with them directly — a hash would add a column and say less to whoever reads the table.
//! Each kind of request keeps its keys in its own table (orders in `orders`), so one key text
//! used for a deposit, a transfer and an order names three different requests.
//!
//! SQLite adds one column per `ALTER TABLE`, cannot add a check constraint to a table that
//! exists (so `sender_balance_after` has none; the service refuses a negative amount when it
//! reads one), and cannot drop a column an index covers: hence one statement per column, and
//! `down` drops the index first.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deposits::Table)
                    .col(big_pk_auto(Deposits::Id))
                    .col(big_integer(Deposits::UserId))
                    .col(decimal_len(Deposits::Amount, 14, 2))
                    .col(decimal_len(Deposits::BalanceAfter, 14, 2))
                    .col(string_len_null(Deposits::IdempotencyKey, 255))
                    .col(
                        timestamp_with_time_zone(Deposits::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    // Also the index behind the foreign key, and a user's deposits by prefix.
                    .index(
                        Index::create()
                            .name("uq_deposits_user_id_idempotency_key")
                            .col(Deposits::UserId)
                            .col(Deposits::IdempotencyKey)
                            .unique(),
                    )
                    .check((
                        "ck_deposits_amount_positive",
                        Expr::col(Deposits::Amount).gt(0),
                    ))
                    .check((
                        "ck_deposits_balance_after_not_negative",
                        Expr::col(Deposits::BalanceAfter).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deposits_user_id")
                            .from(Deposits::Table, Deposits::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for column in [
            string_len_null(Transfers::IdempotencyKey, 255),
            decimal_len_null(Transfers::SenderBalanceAfter, 14, 2),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Transfers::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("uq_transfers_from_user_id_idempotency_key")
                    .table(Transfers::Table)
                    .col(Transfers::FromUserId)
                    .col(Transfers::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("uq_transfers_from_user_id_idempotency_key")
                    .table(Transfers::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Transfers::SenderBalanceAfter, Transfers::IdempotencyKey] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Transfers::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Deposits::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Deposits {
    Table,
    Id,
    UserId,
    Amount,
    BalanceAfter,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Transfers {
    Table,
    FromUserId,
    IdempotencyKey,
    SenderBalanceAfter,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
