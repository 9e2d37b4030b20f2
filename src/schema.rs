//! Whether the schema is ready for a command, decided in one place: [`ensure_schema`].
//!
//! The policy: SQLite is a local file that belongs to this application, so `serve`, `demo` and
//! `compare` bring it up to date themselves. A database server is shared, and migrating it is a
//! deliberate step (`mercado migrate up`, or `serve --migrate`), so there pending migrations stop
//! the command with a message saying how to apply them. `seed` and `export` never migrate, on any
//! backend: they fill or read a database that is expected to be ready. `migrate` itself does not
//! come here. This module may depend on the migration crate and SeaORM.

use anyhow::{Context, bail};
use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DbBackend};

/// Which command is asking, which decides what happens to pending migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// `serve`: migrates SQLite always, any backend with `--migrate` (`migrate: true`).
    Serve { migrate: bool },
    /// `demo` and `compare`: migrate SQLite; refuse pending migrations elsewhere.
    Experiment,
    /// `seed` and `export`: never migrate; refuse pending migrations.
    Data,
}

impl SchemaPolicy {
    /// Whether pending migrations are applied, on `backend`, rather than refused.
    fn applies_migrations(self, backend: DbBackend) -> bool {
        match self {
            SchemaPolicy::Serve { migrate } => migrate || backend == DbBackend::Sqlite,
            SchemaPolicy::Experiment => backend == DbBackend::Sqlite,
            SchemaPolicy::Data => false,
        }
    }

    /// What the command says when it refuses to run with `pending` migrations. The wordings are
    /// each command's own, as they were before they met here.
    fn refusal(self, pending: &[&str]) -> String {
        let count = pending.len();
        match self {
            SchemaPolicy::Serve { .. } => format!(
                "{count} migration(s) pending: {}.\nApply them with `mercado migrate up` (or \
                 `sea-orm-cli migrate up`), or start with `mercado serve --migrate`.",
                pending.join(", ")
            ),
            SchemaPolicy::Experiment => format!(
                "{count} migration(s) are pending: run `mercado migrate up` (or `sea-orm-cli \
                 migrate up`) first"
            ),
            SchemaPolicy::Data => format!(
                "{count} migrations are pending: run `mercado migrate up` (or `sea-orm-cli \
                 migrate up`) first"
            ),
        }
    }
}

/// Brings the schema up to date where `policy` allows it; otherwise fails, saying what to run,
/// while any migration is pending.
pub async fn ensure_schema(db: &DatabaseConnection, policy: SchemaPolicy) -> anyhow::Result<()> {
    if policy.applies_migrations(db.get_database_backend()) {
        return Migrator::up(db, None).await.context("applying migrations");
    }
    let pending = Migrator::get_pending_migrations(db)
        .await
        .context("reading which migrations are applied")?;
    if pending.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = pending.iter().map(|migration| migration.name()).collect();
    bail!(policy.refusal(&names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_migrated_by_serve_and_the_experiments_but_never_by_the_data_commands() {
        let serve = SchemaPolicy::Serve { migrate: false };
        assert!(serve.applies_migrations(DbBackend::Sqlite));
        assert!(SchemaPolicy::Experiment.applies_migrations(DbBackend::Sqlite));
        assert!(!SchemaPolicy::Data.applies_migrations(DbBackend::Sqlite));
    }

    #[test]
    fn a_database_server_is_migrated_only_by_serve_migrate() {
        for backend in [DbBackend::Postgres, DbBackend::MySql] {
            assert!(SchemaPolicy::Serve { migrate: true }.applies_migrations(backend));
            assert!(!SchemaPolicy::Serve { migrate: false }.applies_migrations(backend));
            assert!(!SchemaPolicy::Experiment.applies_migrations(backend));
            assert!(!SchemaPolicy::Data.applies_migrations(backend));
        }
    }

    #[test]
    fn each_refusal_says_how_to_apply_the_pending_migrations() {
        let pending = ["m1_users", "m2_orders"];
        assert_eq!(
            SchemaPolicy::Serve { migrate: false }.refusal(&pending),
            "2 migration(s) pending: m1_users, m2_orders.\nApply them with `mercado migrate up` \
             (or `sea-orm-cli migrate up`), or start with `mercado serve --migrate`."
        );
        assert_eq!(
            SchemaPolicy::Experiment.refusal(&pending),
            "2 migration(s) are pending: run `mercado migrate up` (or `sea-orm-cli migrate up`) \
             first"
        );
        assert_eq!(
            SchemaPolicy::Data.refusal(&pending),
            "2 migrations are pending: run `mercado migrate up` (or `sea-orm-cli migrate up`) \
             first"
        );
    }
}
