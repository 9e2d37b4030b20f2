//! The `mercado` binary: reads the settings, then runs one command — by default, preparing the
//! database. It is kept short: everything it does is a call into the `api`, `service` or
//! `migration` crates. It may depend on every crate of the workspace; none depends on it.

mod data_cli;
mod observe_cli;
mod settings;
mod telemetry;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DbBackend};

use settings::Settings;

/// Mercado: a small marketplace that shows how application code should meet the database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    },
    /// Run canonical queries through the ORM and as raw SQL, and compare SQL, results and time.
    Compare {
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fill the database with a data set of the given size, by the fastest correct path.
    Seed(data_cli::SeedArgs),
    /// Stream messages out as NDJSON, in bounded memory.
    Export(data_cli::ExportArgs),
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is not.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        return Err(error).context("reading .env");
    }
    let cli = Cli::parse();
    telemetry::init(&cli.settings.log)?;
    let database = cli.settings.database.to_settings();
    tracing::info!(database = %database.redacted_url(), "connecting");
    let mut db = service::db::connect(&database).await?;
    // Before the connection is cloned anywhere: clones taken earlier would not log or capture.
    let observe = service::observe::ObserveConfig::default()
        .with_slow_threshold(cli.settings.log.sql_slow_threshold);
    service::observe::install(&mut db, observe);

    match cli.command {
        Some(Command::Migrate { action }) => migrate(&db, action).await,
        Some(Command::Demo { json }) => observe_cli::demo(&db, json).await,
        Some(Command::Compare { json }) => observe_cli::compare(&db, json).await,
        Some(Command::Seed(args)) => data_cli::run_seed(&db, args).await,
        Some(Command::Export(args)) => data_cli::run_export(&db, args).await,
        None => prepare(&db).await,
    }
}

/// The default command: on SQLite, create and migrate the database; elsewhere, report.
async fn prepare(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Sqlite {
        Migrator::up(db, None)
            .await
            .context("applying migrations")?;
    }
    let pending = Migrator::get_pending_migrations(db).await?;
    if pending.is_empty() {
        tracing::info!("the database schema is up to date");
    } else {
        tracing::warn!(
            pending = pending.len(),
            "migrations are pending: run `mercado migrate up` (or `sea-orm-cli migrate up`)"
        );
    }
    Ok(())
}

async fn migrate(db: &DatabaseConnection, action: MigrateAction) -> anyhow::Result<()> {
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
