//! Orders and their lines. A line's primary key is (order, product): a product appears at most
//! once per order. `position` keeps the lines in the order the buyer sent them. The idempotency
//! key is unique per buyer; NULLs (no key) never collide.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(big_pk_auto(Orders::Id))
                    .col(big_integer(Orders::BuyerId))
                    .col(string_len(Orders::Status, 16))
                    .col(decimal_len(Orders::Total, 14, 2))
                    .col(string_len_null(Orders::IdempotencyKey, 255))
                    .col(
                        timestamp_with_time_zone(Orders::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .col(timestamp_with_time_zone_null(Orders::CancelledAt))
                    .index(
                        Index::create()
                            .name("uq_orders_buyer_id_idempotency_key")
                            .col(Orders::BuyerId)
                            .col(Orders::IdempotencyKey)
                            .unique(),
                    )
                    .check((
                        "ck_orders_status",
                        Expr::col(Orders::Status).is_in(["paid", "cancelled"]),
                    ))
                    .check((
                        "ck_orders_total_not_negative",
                        Expr::col(Orders::Total).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_orders_buyer_id")
                            .from(Orders::Table, Orders::BuyerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_orders_buyer_id_id")
                    .table(Orders::Table)
                    .col(Orders::BuyerId)
                    .col(Orders::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(big_integer(OrderItems::OrderId))
                    .col(big_integer(OrderItems::ProductId))
                    .col(integer(OrderItems::Position))
                    .col(integer(OrderItems::Quantity))
                    .col(decimal_len(OrderItems::UnitPrice, 12, 2))
                    .primary_key(
                        Index::create()
                            .name("pk_order_items")
                            .col(OrderItems::OrderId)
                            .col(OrderItems::ProductId),
                    )
                    .index(
                        Index::create()
                            .name("uq_order_items_order_id_position")
                            .col(OrderItems::OrderId)
                            .col(OrderItems::Position)
                            .unique(),
                    )
                    .check((
                        "ck_order_items_quantity_positive",
                        Expr::col(OrderItems::Quantity).gt(0),
                    ))
                    .check((
                        "ck_order_items_unit_price_not_negative",
                        Expr::col(OrderItems::UnitPrice).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_items_order_id")
                            .from(OrderItems::Table, OrderItems::OrderId)
                            .to(Orders::Table, Orders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_order_items_product_id")
                            .from(OrderItems::Table, OrderItems::ProductId)
                            .to(Products::Table, Products::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_order_items_product_id")
                    .table(OrderItems::Table)
                    .col(OrderItems::ProductId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrderItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    BuyerId,
    Status,
    Total,
    IdempotencyKey,
    CreatedAt,
    CancelledAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    OrderId,
    ProductId,
    Position,
    Quantity,
    UnitPrice,
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
