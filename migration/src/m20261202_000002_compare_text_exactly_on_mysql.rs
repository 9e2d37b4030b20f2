//! MySQL and MariaDB compare text as PostgreSQL does: exactly, code point by code point. Their
//! default collations (`utf8mb4_general_ci`, `utf8mb4_0900_ai_ci`, `utf8mb4_unicode_ci`) ignore
//! case and accents, weigh every emoji alike (general_ci) and ignore trailing spaces (PAD SPACE):
//! a product search for 😀 matched names holding 🎉, a SKU `ab` collided with `AB` and with
//! `ab `, and names sorted unlike on PostgreSQL (whose database here is `C.UTF-8`). Every text
//! column becomes `utf8mb4` with the server's binary NO PAD collation — `utf8mb4_nopad_bin` on
//! MariaDB, `utf8mb4_0900_bin` on MySQL 8 — so that equality, uniqueness, `LIKE` and `ORDER BY`
//! behave as on PostgreSQL. Case-insensitive comparisons are Mercado's own business: the
//! `*_canonical` columns hold lowercased text, and the product search lowers both sides.
//!
//! `down` gives each column back its table's default character set and collation, which is what
//! the earlier migrations gave it (they name none). PostgreSQL and SQLite already compare
//! exactly: on them both directions do nothing, and the entities do not change.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Every text column of the schema: `(table, column, type, nullable)`, as the earlier
/// migrations made them.
const TEXT_COLUMNS: &[(&str, &str, &str, bool)] = &[
    ("users", "username", "varchar(50)", false),
    ("users", "username_canonical", "varchar(50)", false),
    ("users", "email", "varchar(255)", false),
    ("users", "email_canonical", "varchar(255)", false),
    ("users", "display_name", "varchar(100)", false),
    ("api_tokens", "token_hash", "varchar(64)", false),
    ("products", "sku", "varchar(64)", false),
    ("products", "name", "varchar(200)", false),
    ("conversations", "title", "varchar(200)", false),
    ("messages", "body", "text", false),
    ("orders", "status", "varchar(16)", false),
    ("orders", "idempotency_key", "varchar(255)", true),
    ("transfers", "idempotency_key", "varchar(255)", true),
    ("deposits", "idempotency_key", "varchar(255)", true),
];

/// The binary NO PAD collations, in order of preference: MariaDB's, then MySQL 8's.
const EXACT_COLLATIONS: &[&str] = &["utf8mb4_nopad_bin", "utf8mb4_0900_bin"];

/// `ALTER TABLE … MODIFY` for one column, with `collation` or, for `None`, the table's default.
/// The identifiers and the collation come from the constants of this file.
fn modify(
    table: &str,
    column: &str,
    kind: &str,
    nullable: bool,
    collation: Option<&str>,
) -> String {
    let charset = collation
        .map(|collation| format!(" CHARACTER SET utf8mb4 COLLATE {collation}"))
        .unwrap_or_default();
    let null = if nullable { "NULL" } else { "NOT NULL" };
    format!("ALTER TABLE `{table}` MODIFY `{column}` {kind}{charset} {null}")
}

/// The first of [`EXACT_COLLATIONS`] this server has.
async fn exact_collation(manager: &SchemaManager<'_>) -> Result<&'static str, DbErr> {
    let db = manager.get_connection();
    for &collation in EXACT_COLLATIONS {
        let known = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT 1 FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?",
                [collation.into()],
            ))
            .await?;
        if known.is_some() {
            return Ok(collation);
        }
    }
    Err(DbErr::Migration(format!(
        "this server has none of the binary NO PAD collations {EXACT_COLLATIONS:?}: MariaDB 10.2 \
         or later, or MySQL 8, is needed"
    )))
}

async fn set_collation(manager: &SchemaManager<'_>, collation: Option<&str>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for &(table, column, kind, nullable) in TEXT_COLUMNS {
        db.execute_unprepared(&modify(table, column, kind, nullable, collation))
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let collation = exact_collation(manager).await?;
        set_collation(manager, Some(collation)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        set_collation(manager, None).await
    }
}
