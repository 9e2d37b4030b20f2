//! The `mercado` binary: reads the settings, then runs one command — by default, serving the HTTP
//! API. It is kept short: everything it does is a call into the `api`, `service` or `migration`
//! crates. It may depend on every crate of the workspace; none depends on it.

mod data_cli;
mod observe_cli;
mod settings;
mod telemetry;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::net::TcpListener;

use settings::Settings;

/// Mercado: a small marketplace that shows how application code should meet the database.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

/// One variant per subcommand; each is handled by one arm of `main`'s `match`.
#[derive(Debug, Subcommand)]
enum Command {
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

impl Default for Command {
    fn default() -> Self {
        Command::Serve(ServeArgs::default())
    }
}

#[derive(Debug, Default, Args)]
struct ServeArgs {
    /// Apply pending migrations before serving. Needed on PostgreSQL and MySQL only, where
    /// migrating is otherwise a deliberate step; on SQLite, `serve` always migrates.
    #[arg(long)]
    migrate: bool,
    /// Do not load the demo data set, even into an empty database (one with no users).
    #[arg(long)]
    no_demo_data: bool,
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
    let observe =
        api::sql_scope::observe_config().with_slow_threshold(cli.settings.log.sql_slow_threshold);
    sql_observe::install(&mut db, observe);

    match cli.command.unwrap_or_default() {
        Command::Serve(args) => serve(db, &cli.settings, args).await,
        Command::Migrate { action } => migrate(&db, action).await,
        Command::Demo { json } => observe_cli::demo(&db, json).await,
        Command::Compare { json } => observe_cli::compare(&db, json).await,
        Command::Seed(args) => data_cli::run_seed(&db, args).await,
        Command::Export(args) => data_cli::run_export(&db, args).await,
    }
}

/// Brings the schema up to date where that is allowed, serves until SIGINT or SIGTERM, then lets
/// the requests in flight finish and closes the pool.
async fn serve(db: DatabaseConnection, settings: &Settings, args: ServeArgs) -> anyhow::Result<()> {
    prepare_schema(&db, args.migrate).await?;
    let address = settings.server.listen_addr;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr()?;
    let base = mercado_lab::demo_data::base_url(local);
    if args.no_demo_data {
        let why = "No demo data (--no-demo-data).";
        println!("{}", mercado_lab::demo_data::how_to_get_a_token(why, &base));
    } else if mercado_lab::demo_data::is_empty(&db).await? {
        let demo = mercado_lab::demo_data::load(&db)
            .await
            .context("loading the demo data set")?;
        println!("{}", mercado_lab::demo_data::welcome(&demo, &base));
    } else {
        let why = "The database already has users, so no demo data was loaded.";
        println!("{}", mercado_lab::demo_data::how_to_get_a_token(why, &base));
    }
    tracing::info!("serving on http://{local}");
    let state = api::AppState::new(db.clone(), settings.server.to_api_settings());
    api::serve(listener, state, api::shutdown_signal())
        .await
        .context("serving HTTP")?;
    db.close().await.context("closing the database pool")?;
    tracing::info!("stopped");
    Ok(())
}

/// SQLite (a local file) is migrated on start; on a database server, migrating is a deliberate
/// step, so pending migrations stop `serve` unless it was asked to apply them.
async fn prepare_schema(db: &DatabaseConnection, migrate: bool) -> anyhow::Result<()> {
    if migrate || db.get_database_backend() == DbBackend::Sqlite {
        return Migrator::up(db, None).await.context("applying migrations");
    }
    let pending = Migrator::get_pending_migrations(db)
        .await
        .context("reading which migrations are applied")?;
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|migration| migration.name()).collect();
        bail!(
            "{} migration(s) pending: {}.\nApply them with `mercado migrate up` (or \
             `sea-orm-cli migrate up`), or start with `mercado serve --migrate`.",
            names.len(),
            names.join(", ")
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
