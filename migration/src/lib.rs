//! Mercado's schema, as a list of versioned migrations in the style of Alembic revisions.
//!
//! Each migration is one change, named by date and purpose, with an exact `down`. They are written
//! with SeaORM's schema builder so the same code creates the schema on PostgreSQL, SQLite and
//! MySQL. This crate depends on no other crate of Mercado's: an old migration must never change
//! because the entities were regenerated, so each file names its own tables and columns.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_users;
mod m20261121_000002_create_api_tokens;
mod m20261121_000003_create_accounts;
mod m20261121_000004_create_products_and_inventory;
mod m20261121_000005_create_conversations;
mod m20261121_000006_create_messages;
mod m20261121_000007_create_orders;
mod m20261121_000008_create_transfers;
mod m20261122_000001_add_users_display_name;
mod m20261201_000001_add_idempotency_keys_to_money;
mod m20261202_000001_keep_microseconds_on_mysql;
mod m20261202_000002_compare_text_exactly_on_mysql;

/// Runs Mercado's migrations in order; `sea-orm-cli migrate` drives it through `main.rs`.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_users::Migration),
            Box::new(m20261121_000002_create_api_tokens::Migration),
            Box::new(m20261121_000003_create_accounts::Migration),
            Box::new(m20261121_000004_create_products_and_inventory::Migration),
            Box::new(m20261121_000005_create_conversations::Migration),
            Box::new(m20261121_000006_create_messages::Migration),
            Box::new(m20261121_000007_create_orders::Migration),
            Box::new(m20261121_000008_create_transfers::Migration),
            Box::new(m20261122_000001_add_users_display_name::Migration),
            Box::new(m20261201_000001_add_idempotency_keys_to_money::Migration),
            Box::new(m20261202_000001_keep_microseconds_on_mysql::Migration),
            Box::new(m20261202_000002_compare_text_exactly_on_mysql::Migration),
        ]
    }
}
