//! Products and their stock. Inventory is one-to-one with products (the product id is its primary
//! key) so the stock row can be locked and updated without touching the product row.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(big_pk_auto(Products::Id))
                    .col(string_len(Products::Sku, 64))
                    .col(string_len(Products::Name, 200))
                    .col(decimal_len(Products::Price, 12, 2))
                    .col(big_integer(Products::SellerId))
                    .col(
                        timestamp_with_time_zone(Products::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .index(
                        Index::create()
                            .name("uq_products_sku")
                            .col(Products::Sku)
                            .unique(),
                    )
                    .check((
                        "ck_products_price_not_negative",
                        Expr::col(Products::Price).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_seller_id")
                            .from(Products::Table, Products::SellerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_products_seller_id")
                    .table(Products::Table)
                    .col(Products::SellerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_products_created_at")
                    .table(Products::Table)
                    .col(Products::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Inventory::Table)
                    .col(big_integer(Inventory::ProductId).primary_key())
                    .col(integer(Inventory::Quantity).default(0))
                    .check((
                        "ck_inventory_quantity_not_negative",
                        Expr::col(Inventory::Quantity).gte(0),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_inventory_product_id")
                            .from(Inventory::Table, Inventory::ProductId)
                            .to(Products::Table, Products::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Inventory::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Sku,
    Name,
    Price,
    SellerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Inventory {
    Table,
    ProductId,
    Quantity,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
