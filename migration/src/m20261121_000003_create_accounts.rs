//! Accounts: one per user (the user id is the primary key, which makes the relation one-to-one),
//! with a balance the database itself refuses to let go below zero.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(big_integer(Accounts::UserId).primary_key())
                    .col(decimal_len(Accounts::Balance, 14, 2).default(0))
                    .col(
                        timestamp_with_time_zone(Accounts::UpdatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .check((
                        "ck_accounts_balance_not_negative",
                        Expr::col(Accounts::Balance).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_accounts_user_id")
                            .from(Accounts::Table, Accounts::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    UserId,
    Balance,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
