//! The schema changes over time: users get a display name after users already exist. The column
//! is added nullable, back-filled from `username`, then made NOT NULL — the three steps a live
//! table needs, since a NOT NULL column without a value cannot be added to rows that exist.
//!
//! SQLite cannot alter a column's nullability, so there the column is added NOT NULL with an
//! empty default and back-filled in the same way; the application always sets it.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = manager.get_database_backend() == DbBackend::Sqlite;
        let column = if sqlite {
            string_len(Users::DisplayName, 100).default("").to_owned()
        } else {
            string_len_null(Users::DisplayName, 100)
        };
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Users::Table)
                    .value(Users::DisplayName, Expr::col(Users::Username))
                    .to_owned(),
            )
            .await?;
        if !sqlite {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .modify_column(string_len(Users::DisplayName, 100))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::DisplayName)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Username,
    DisplayName,
}
