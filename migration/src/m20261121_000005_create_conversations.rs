//! Conversations and their participants: the many-to-many junction between users and
//! conversations, keyed by both ids. The extra index on `user_id` serves "my conversations".

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(big_pk_auto(Conversations::Id))
                    .col(string_len(Conversations::Title, 200))
                    .col(big_integer_null(Conversations::ProductId))
                    .col(big_integer(Conversations::CreatedBy))
                    .col(
                        timestamp_with_time_zone(Conversations::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversations_product_id")
                            .from(Conversations::Table, Conversations::ProductId)
                            .to(Products::Table, Products::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversations_created_by")
                            .from(Conversations::Table, Conversations::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ix_conversations_product_id", Conversations::ProductId),
            ("ix_conversations_created_by", Conversations::CreatedBy),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Conversations::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ConversationParticipants::Table)
                    .col(big_integer(ConversationParticipants::ConversationId))
                    .col(big_integer(ConversationParticipants::UserId))
                    .col(
                        timestamp_with_time_zone(ConversationParticipants::JoinedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .primary_key(
                        Index::create()
                            .name("pk_conversation_participants")
                            .col(ConversationParticipants::ConversationId)
                            .col(ConversationParticipants::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversation_participants_conversation_id")
                            .from(
                                ConversationParticipants::Table,
                                ConversationParticipants::ConversationId,
                            )
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversation_participants_user_id")
                            .from(
                                ConversationParticipants::Table,
                                ConversationParticipants::UserId,
                            )
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_conversation_participants_user_id")
                    .table(ConversationParticipants::Table)
                    .col(ConversationParticipants::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ConversationParticipants::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Conversations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Conversations {
    Table,
    Id,
    Title,
    ProductId,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ConversationParticipants {
    Table,
    ConversationId,
    UserId,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
