//! Users. Username and email keep the case the user typed; their `_canonical` twins hold the
//! lower-cased form the unique constraints compare, so "Ann@x.io" and "ann@X.io" collide on every
//! backend without functional indexes (which MySQL and MariaDB lack or limit).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len(Users::Username, 50))
                    .col(string_len(Users::UsernameCanonical, 50))
                    .col(string_len(Users::Email, 255))
                    .col(string_len(Users::EmailCanonical, 255))
                    .col(
                        timestamp_with_time_zone(Users::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .index(
                        Index::create()
                            .name("uq_users_username_canonical")
                            .col(Users::UsernameCanonical)
                            .unique(),
                    )
                    .index(
                        Index::create()
                            .name("uq_users_email_canonical")
                            .col(Users::EmailCanonical)
                            .unique(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    UsernameCanonical,
    Email,
    EmailCanonical,
    CreatedAt,
}
