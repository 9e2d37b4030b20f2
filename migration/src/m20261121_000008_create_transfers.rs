//! Transfers between users' accounts: the ledger of money moved, positive amounts only, never to
//! oneself.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Transfers::Table)
                    .col(big_pk_auto(Transfers::Id))
                    .col(big_integer(Transfers::FromUserId))
                    .col(big_integer(Transfers::ToUserId))
                    .col(decimal_len(Transfers::Amount, 14, 2))
                    .col(
                        timestamp_with_time_zone(Transfers::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .check((
                        "ck_transfers_amount_positive",
                        Expr::col(Transfers::Amount).gt(0),
                    ))
                    .check((
                        "ck_transfers_not_to_self",
                        Expr::col(Transfers::FromUserId).ne(Expr::col(Transfers::ToUserId)),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_from_user_id")
                            .from(Transfers::Table, Transfers::FromUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_to_user_id")
                            .from(Transfers::Table, Transfers::ToUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ix_transfers_from_user_id", Transfers::FromUserId),
            ("ix_transfers_to_user_id", Transfers::ToUserId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Transfers::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Transfers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Transfers {
    Table,
    Id,
    FromUserId,
    ToUserId,
    Amount,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
