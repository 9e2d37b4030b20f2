//! The command line: one [`Command`] per subcommand, with the flags of each, over the settings
//! every command shares ([`mercado::settings::SettingsArgs`]), and `migrate`'s one-line runs of
//! the migrator. It may depend on the `mercado` library, clap and the migration crate.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mercado::{
    settings::SettingsArgs,
    startup::{DemoData, ServeOptions},
};
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

use crate::data_cli;

/// Mercado: a small marketplace that shows how application code should meet the database.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) settings: SettingsArgs,
}

/// One variant per subcommand; each is handled by one arm of `main`'s `match`.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API (the default command).
    Serve(ServeArgs),
    /// Apply, roll back or list the schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Load the same related data lazily, joined and select-in, and show the SQL each sends.
    Demo {
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the report as a static HTML page, the strategies side by side, with the
        /// SQL inspector's view of each (statements, values, timeline, findings).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Run canonical queries through the ORM and as raw SQL, and compare SQL, results and time.
    Compare {
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the report as a static HTML page, the sides side by side, their SQL
        /// formatted and highlighted, with their plans.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Fill the database with a data set of the given size, by the fastest correct path.
    Seed(data_cli::SeedArgs),
    /// Stream messages out as NDJSON, in bounded memory.
    Export(data_cli::ExportArgs),
}

impl Default for Command {
    fn default() -> Self {
        Command::Serve(ServeArgs::default())
    }
}

#[derive(Debug, Default, Args)]
pub(crate) struct ServeArgs {
    /// Apply pending migrations before serving. Needed on PostgreSQL and MySQL only, where
    /// migrating is otherwise a deliberate step; on SQLite, `serve` always migrates.
    #[arg(long)]
    migrate: bool,
    /// Do not load the demo data set, even into an empty database (one with no users).
    #[arg(long)]
    no_demo_data: bool,
}

impl ServeArgs {
    pub(crate) fn options(&self) -> ServeOptions {
        ServeOptions {
            migrate: self.migrate,
            demo_data: if self.no_demo_data {
                DemoData::Skip
            } else {
                DemoData::IntoEmpty
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateAction {
    /// Apply pending migrations (all, or the next N).
    Up {
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations (the last one, or the last N).
    Down {
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table, then apply every migration.
    Fresh,
    /// Roll back every migration, then apply them all again.
    Refresh,
    /// Roll back every migration.
    Reset,
}

pub(crate) async fn migrate(db: &DatabaseConnection, action: MigrateAction) -> anyhow::Result<()> {
    match action {
        MigrateAction::Up { num } => Migrator::up(db, num).await?,
        MigrateAction::Down { num } => Migrator::down(db, Some(num)).await?,
        MigrateAction::Status => Migrator::status(db).await?,
        MigrateAction::Fresh => Migrator::fresh(db).await?,
        MigrateAction::Refresh => Migrator::refresh(db).await?,
        MigrateAction::Reset => Migrator::reset(db).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
