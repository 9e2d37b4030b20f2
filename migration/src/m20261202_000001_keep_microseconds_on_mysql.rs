//! MySQL and MariaDB keep a time's fraction of a second. SeaORM's `timestamp_with_time_zone` is a
//! bare `timestamp` there, which stores whole seconds: a resource read back lost the
//! `.582695` it was created with, and ordering by time could not tell apart rows of one second.
//! Every time column becomes `timestamp(6)` (microseconds, as PostgreSQL's `timestamptz` keeps),
//! its default `current_timestamp(6)`; `down` gives back exactly the columns the earlier
//! migrations made (fractions are then cut off, as they were before).
//!
//! PostgreSQL and SQLite already keep fractions, so on them both directions do nothing — and the
//! entities, generated from PostgreSQL, do not change.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Every time column of the schema: `(table, column, nullable)`. The non-nullable ones default
/// to the current time, as their `create_table` made them.
const TIME_COLUMNS: &[(&str, &str, bool)] = &[
    ("users", "created_at", false),
    ("api_tokens", "created_at", false),
    ("accounts", "updated_at", false),
    ("products", "created_at", false),
    ("conversations", "created_at", false),
    ("conversation_participants", "joined_at", false),
    ("messages", "created_at", false),
    ("orders", "created_at", false),
    ("orders", "cancelled_at", true),
    ("transfers", "created_at", false),
    ("deposits", "created_at", false),
];

/// `ALTER TABLE … MODIFY` for one column at `precision` fractional digits (empty: none). The
/// identifiers come from [`TIME_COLUMNS`], constants of this file.
fn modify(table: &str, column: &str, nullable: bool, precision: &str) -> String {
    let definition = if nullable {
        "NULL DEFAULT NULL".to_owned()
    } else {
        format!(
            "NOT NULL DEFAULT current_timestamp{}",
            precision_or_call(precision)
        )
    };
    format!("ALTER TABLE `{table}` MODIFY `{column}` timestamp{precision} {definition}")
}

/// `current_timestamp(6)` for six digits, `current_timestamp()` for none.
fn precision_or_call(precision: &str) -> &str {
    if precision.is_empty() {
        "()"
    } else {
        precision
    }
}

async fn set_precision(manager: &SchemaManager<'_>, precision: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::MySql {
        return Ok(());
    }
    let db = manager.get_connection();
    for &(table, column, nullable) in TIME_COLUMNS {
        db.execute_unprepared(&modify(table, column, nullable, precision))
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_precision(manager, "(6)").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_precision(manager, "").await
    }
}
