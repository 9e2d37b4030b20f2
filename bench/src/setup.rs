//! The benchmark databases: created when missing, migrated with the real migrations, seeded
//! once with `mercado_lab::seed::seed` and reused while their seed marker matches the sizes asked.
//!
//! Database names are a validated prefix (a constant by default) plus a constant suffix; they
//! are identifiers, so they cannot be bound and are quoted after validation instead. Every
//! value is bound.

use std::time::Instant;

use anyhow::{Context, bail};
use chrono::Utc;
use mercado_lab::seed::{SeedReport, SeedSizes};
use migration::MigratorTrait;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use service::db::DatabaseSettings;
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;

/// The prefix of every database the harness creates, unless `--database-prefix` says otherwise.
pub(crate) const DEFAULT_DATABASE_PREFIX: &str = "mercado_bench";
/// Suffix of the database seeded with about 10,000 messages, whatever the scale.
pub(crate) const SMALL_SUFFIX: &str = "small";
/// Suffix of the database seeded at the chosen scale.
pub(crate) const LARGE_SUFFIX: &str = "large";
/// The database of the loading fixtures, seeded like the small one: kept apart so that the
/// large one holds exactly the seeded messages (the last-10 and export figures are about them).
pub(crate) const LOADING_SUFFIX: &str = "loading";
/// The marker that says a database holds a completed seed of given sizes.
const SEED_MARKER_KEY: &str = "seed";
/// Fixed, so that two seeds of the same sizes hold the same content.
const SEED_VALUE: u64 = 20_261_121;

/// Checks that `prefix` is a plain lower-case identifier, so that the names built from it need
/// no escaping and cannot smuggle SQL.
pub(crate) fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let valid = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("--database-prefix must match [a-z][a-z0-9_]{{0,39}}, got {prefix:?}");
    }
    Ok(())
}

pub(crate) fn database_name(prefix: &str, suffix: &'static str) -> String {
    format!("{prefix}_{suffix}")
}

/// The URL of database `name` on the server `server_url` names.
pub(crate) fn database_url(server_url: &Url, name: &str) -> Url {
    let mut url = server_url.clone();
    url.set_path(&format!("/{name}"));
    url
}

async fn maintenance_connection(server_url: &Url) -> anyhow::Result<PgConnection> {
    let url = database_url(server_url, "postgres");
    PgConnection::connect(url.as_str())
        .await
        .context("connecting to the server's postgres database")
}

async fn database_exists(server: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(server)
        .await?;
    Ok(found.is_some())
}

/// Creates database `name` (built from a checked prefix and a constant) when it is missing.
async fn create_database(server_url: &Url, name: &str) -> anyhow::Result<()> {
    let mut server = maintenance_connection(server_url).await?;
    if !database_exists(&mut server, name).await? {
        // An identifier: quoted, and made only of [a-z0-9_] (see check_prefix).
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut server)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}

/// Drops database `name`, closing the sessions still connected to it.
pub(crate) async fn drop_database(server_url: &Url, name: &str) -> anyhow::Result<()> {
    let mut server = maintenance_connection(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut server)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    Ok(())
}

/// One table's share of a seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SeedTableFigures {
    pub(crate) table: String,
    pub(crate) rows: u64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
}

/// What the seed of a database did, as recorded in its marker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SeedFigures {
    pub(crate) users: u64,
    pub(crate) conversations: u64,
    pub(crate) messages: u64,
    pub(crate) products: u64,
    /// The run tag of the seeded rows (`seed-<tag>-…` usernames).
    pub(crate) tag: String,
    pub(crate) seeded_at: String,
    pub(crate) rows: u64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
    pub(crate) tables: Vec<SeedTableFigures>,
    /// Whether this run seeded the database (false: reused a seed made earlier).
    #[serde(default)]
    pub(crate) seeded_by_this_run: bool,
}

impl SeedFigures {
    fn from_report(sizes: SeedSizes, report: &SeedReport) -> Self {
        SeedFigures {
            users: sizes.users,
            conversations: sizes.conversations,
            messages: sizes.messages,
            products: sizes.products,
            tag: report.tag.clone(),
            seeded_at: Utc::now().to_rfc3339(),
            rows: report.rows(),
            seconds: report.elapsed.as_secs_f64(),
            rows_per_second: report.rows_per_second(),
            tables: report
                .tables
                .iter()
                .map(|t| SeedTableFigures {
                    table: t.table.to_owned(),
                    rows: t.rows,
                    seconds: t.elapsed.as_secs_f64(),
                    rows_per_second: t.rows_per_second(),
                })
                .collect(),
            seeded_by_this_run: true,
        }
    }

    fn has_sizes(&self, sizes: SeedSizes) -> bool {
        self.users == sizes.users
            && self.conversations == sizes.conversations
            && self.messages == sizes.messages
            && self.products == sizes.products
    }
}

/// A benchmark database, connected twice over one pool.
#[derive(Debug, Clone)]
pub(crate) struct BenchDatabase {
    pub(crate) name: String,
    pub(crate) url: Url,
    /// The application's connection: `sql_observe` installed with
    /// `api::sql_scope::observe_config()`, as the binary does.
    pub(crate) app: DatabaseConnection,
    /// The same pool without the capture callback: for ORM-against-raw timings, where the
    /// capture's per-statement work would be charged to the ORM alone.
    pub(crate) plain: DatabaseConnection,
    pub(crate) seed: SeedFigures,
}

impl BenchDatabase {
    pub(crate) fn pool(&self) -> &PgPool {
        self.plain.get_postgres_connection_pool()
    }
}

/// Connects as the application does (`service::db::connect`, default pool settings).
pub(crate) async fn connect_app(
    url: &Url,
) -> anyhow::Result<(DatabaseConnection, DatabaseConnection)> {
    let mut settings = DatabaseSettings::for_url(url.as_str());
    settings.application_name = "mercado-bench".to_owned();
    let plain = service::db::connect(&settings).await?;
    let mut app = plain.clone();
    sql_observe::install(&mut app, api::sql_scope::observe_config());
    Ok((app, plain))
}

async fn ensure_meta_table(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Reads the JSON stored under `key` in `bench_meta`, if any.
pub(crate) async fn read_marker<T: for<'de> Deserialize<'de>>(
    pool: &PgPool,
    key: &str,
) -> anyhow::Result<Option<T>> {
    ensure_meta_table(pool).await?;
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM bench_meta WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await?;
    // A marker written by another version of the harness is treated as absent.
    Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
}

pub(crate) async fn write_marker<T: Serialize>(
    pool: &PgPool,
    key: &str,
    value: &T,
) -> anyhow::Result<()> {
    ensure_meta_table(pool).await?;
    sqlx::query(
        "INSERT INTO bench_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(serde_json::to_string(value)?)
    .execute(pool)
    .await?;
    Ok(())
}

async fn existing_seed(url: &Url) -> anyhow::Result<Option<SeedFigures>> {
    let pool = PgPool::connect(url.as_str()).await?;
    let marker = read_marker::<SeedFigures>(&pool, SEED_MARKER_KEY).await;
    pool.close().await;
    marker
}

/// Creates, migrates and seeds database `name` unless it already holds a completed seed of
/// `sizes` (and `reseed` is false); then connects to it.
pub(crate) async fn prepare(
    server_url: &Url,
    name: &str,
    sizes: SeedSizes,
    reseed: bool,
) -> anyhow::Result<BenchDatabase> {
    let url = database_url(server_url, name);
    let mut server = maintenance_connection(server_url).await?;
    let exists = database_exists(&mut server, name).await?;
    drop(server);
    let reusable = if exists && !reseed {
        existing_seed(&url)
            .await?
            .filter(|seed| seed.has_sizes(sizes))
    } else {
        None
    };
    if reusable.is_none() && exists {
        println!("  {name}: no completed seed of these sizes; recreating it");
        drop_database(server_url, name).await?;
    }
    create_database(server_url, name).await?;
    let (app, plain) = connect_app(&url).await?;
    migration::Migrator::up(&plain, None)
        .await
        .with_context(|| format!("migrating {name}"))?;

    let seed = match reusable {
        Some(mut seed) => {
            seed.seeded_by_this_run = false;
            println!(
                "  {name}: reusing the seed of {} ({} messages)",
                seed.seeded_at, seed.messages
            );
            seed
        }
        None => {
            println!(
                "  {name}: seeding {} users, {} conversations, {} messages, {} products",
                sizes.users, sizes.conversations, sizes.messages, sizes.products
            );
            let started = Instant::now();
            let mut last_print = Instant::now();
            let report = mercado_lab::seed::seed(&plain, sizes, SEED_VALUE, |progress| {
                if last_print.elapsed().as_secs() >= 5 {
                    last_print = Instant::now();
                    println!(
                        "    {}: {}/{} ({:.0} s)",
                        progress.table,
                        progress.done,
                        progress.total,
                        started.elapsed().as_secs_f64()
                    );
                }
            })
            .await
            .with_context(|| format!("seeding {name}"))?;
            let seed = SeedFigures::from_report(sizes, &report);
            // Fresh statistics, or the planner guesses on an empty table's numbers.
            sqlx::query("ANALYZE")
                .execute(plain.get_postgres_connection_pool())
                .await?;
            write_marker(plain.get_postgres_connection_pool(), SEED_MARKER_KEY, &seed).await?;
            println!(
                "  {name}: seeded {} rows in {:.1} s ({:.0} rows/s)",
                seed.rows, seed.seconds, seed.rows_per_second
            );
            seed
        }
    };
    Ok(BenchDatabase {
        name: name.to_owned(),
        url,
        app,
        plain,
        seed,
    })
}

/// The seeded rows' ids, found by the seed's run tag.
#[derive(Debug, Clone)]
pub(crate) struct SeededIds {
    pub(crate) users: Vec<i64>,
    pub(crate) conversations: Vec<i64>,
    pub(crate) products: Vec<i64>,
}

pub(crate) async fn seeded_ids(db: &BenchDatabase) -> anyhow::Result<SeededIds> {
    let pool = db.pool();
    let tag = &db.seed.tag;
    let users = sqlx::query_scalar(
        "SELECT id FROM users WHERE username_canonical LIKE $1 || '%' ORDER BY id",
    )
    .bind(format!("seed-{tag}-"))
    .fetch_all(pool)
    .await?;
    let conversations =
        sqlx::query_scalar("SELECT id FROM conversations WHERE title LIKE $1 || '%' ORDER BY id")
            .bind(format!("Seed {tag} #"))
            .fetch_all(pool)
            .await?;
    let products =
        sqlx::query_scalar("SELECT id FROM products WHERE sku LIKE $1 || '%' ORDER BY id")
            .bind(format!("SEED-{tag}-"))
            .fetch_all(pool)
            .await?;
    Ok(SeededIds {
        users,
        conversations,
        products,
    })
}
