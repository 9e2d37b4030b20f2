//! The test harness every Mercado test stands on.
//!
//! Each test gets its own fresh database, migrated by the real [`migration::Migrator`], and the
//! harness drops it afterwards — also when the test panics. A test written once with
//! [`backend_tests!`] runs on every configured backend: SQLite always, PostgreSQL when
//! `TEST_POSTGRES_URL` names a server, MariaDB (or MySQL) when `TEST_MYSQL_URL` does. Without
//! them those runs are reported by the test runner as *ignored*, with the reason, never as
//! passed. Tests are silent unless `TEST_LOG` is
//! set. Tests that read what was logged take their sink from [`log`]. This crate depends on the
//! migration crate, SeaORM, `sql-observe` and tracing only (not on `service`), so every other
//! crate can use it as a dev-dependency.
//!
//! The ignore switches are `cfg(mercado_postgres)` and `cfg(mercado_mysql)`, which each
//! test-hosting crate's `build.rs` sets when `TEST_POSTGRES_URL` or `TEST_MYSQL_URL` is present at
//! build time (see [`POSTGRES_URL_VAR`], [`MYSQL_URL_VAR`]).

pub mod log;

use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Once, time::Duration};

use anyhow::{Context, bail};
use futures::FutureExt;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use tempfile::TempDir;
use url::Url;

/// The environment variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES_URL_VAR: &str = "TEST_POSTGRES_URL";

/// The environment variable naming the MariaDB (or MySQL) server tests may create databases on.
pub const MYSQL_URL_VAR: &str = "TEST_MYSQL_URL";

/// The database engines a test can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// MariaDB or MySQL, through SeaORM's MySQL driver.
    Mysql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        })
    }
}

/// A fresh, migrated database that belongs to one test.
#[derive(Clone, Debug)]
pub struct TestDb {
    /// A pool on the test's database.
    pub conn: DatabaseConnection,
    /// The URL of the test's database, for code under test that builds its own pool.
    pub url: String,
    pub backend: Backend,
}

impl TestDb {
    pub fn db_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }
}

/// What [`run`] needs to remove the database once the test is over.
enum Cleanup {
    /// The SQLite file lives in this directory, which is deleted when dropped.
    Sqlite(#[allow(dead_code)] TempDir),
    /// A database on a PostgreSQL or MySQL server, removed by running `drop` there.
    Server { server: Url, drop: String },
}

/// Installs the tracing subscriber once per test binary: always the row-count layer (so captured
/// statements carry their rows, as in the binary), and a log printer only when `TEST_LOG` is set.
pub fn init_tracing() {
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Without TEST_LOG the printer is kept, filtered to nothing: an absent (`None`) layer
        // would change how tracing combines the per-layer filters.
        let filter = match std::env::var_os("TEST_LOG") {
            Some(_) => tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug")),
            None => tracing_subscriber::EnvFilter::new("off"),
        };
        let printer = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(filter);
        let _ = tracing_subscriber::registry()
            .with(sql_observe::row_count_layer())
            .with(printer)
            .try_init();
    });
}

/// Creates and migrates a database for one test on `backend`.
async fn create(backend: Backend) -> anyhow::Result<(TestDb, Cleanup)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new().prefix("mercado-test-").tempdir()?;
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            let conn = connect(&url).await?;
            Migrator::up(&conn, None)
                .await
                .context("migrating the SQLite test database")?;
            Ok((TestDb { conn, url, backend }, Cleanup::Sqlite(dir)))
        }
        Backend::Postgres => {
            let database = format!("mercado_test_{}", uuid::Uuid::new_v4().simple());
            // An identifier cannot be a bound parameter; this one is made here from a UUID.
            let create = format!("CREATE DATABASE \"{database}\"");
            let drop = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
            on_server(backend, postgres_server()?, &database, &create, drop).await
        }
        Backend::Mysql => {
            let database = format!("mercado_test_{}", uuid::Uuid::new_v4().simple());
            // As above. No character set or collation is named: the tests see the server's
            // defaults, as a user's `CREATE DATABASE mercado` would, and the migrations must
            // cope with them.
            let create = format!("CREATE DATABASE `{database}`");
            let drop = format!("DROP DATABASE IF EXISTS `{database}`");
            on_server(backend, mysql_server()?, &database, &create, drop).await
        }
    }
}

/// Creates `database` on `server` with `create`, migrates it with the real migrations, and
/// returns it with the cleanup that runs `drop` on the server.
async fn on_server(
    backend: Backend,
    server: Url,
    database: &str,
    create: &str,
    drop: String,
) -> anyhow::Result<(TestDb, Cleanup)> {
    let admin = connect(server.as_str()).await?;
    admin
        .execute_unprepared(create)
        .await
        .with_context(|| format!("creating {database}"))?;
    admin.close().await?;
    let mut url = server.clone();
    url.set_path(database);
    let conn = connect(url.as_str()).await?;
    Migrator::up(&conn, None)
        .await
        .with_context(|| format!("migrating the {backend:?} test database"))?;
    let db = TestDb {
        conn,
        url: url.to_string(),
        backend,
    };
    Ok((db, Cleanup::Server { server, drop }))
}

impl Cleanup {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Cleanup::Sqlite(_dir) => Ok(()),
            Cleanup::Server { server, drop } => {
                let admin = connect(server.as_str()).await?;
                admin.execute_unprepared(&drop).await?;
                admin.close().await?;
                Ok(())
            }
        }
    }
}

/// The server named by `TEST_MYSQL_URL`, pointed at its `mysql` system database.
fn mysql_server() -> anyhow::Result<Url> {
    let Ok(raw) = std::env::var(MYSQL_URL_VAR) else {
        bail!("{MYSQL_URL_VAR} is not set: no MariaDB or MySQL server to test on");
    };
    let mut url = Url::parse(&raw).with_context(|| format!("{MYSQL_URL_VAR} is not a URL"))?;
    url.set_path("mysql");
    Ok(url)
}

/// The server named by `TEST_POSTGRES_URL`, pointed at its `postgres` maintenance database.
fn postgres_server() -> anyhow::Result<Url> {
    let Ok(raw) = std::env::var(POSTGRES_URL_VAR) else {
        bail!("{POSTGRES_URL_VAR} is not set: no PostgreSQL server to test on");
    };
    let mut url = Url::parse(&raw).with_context(|| format!("{POSTGRES_URL_VAR} is not a URL"))?;
    url.set_path("postgres");
    Ok(url)
}

async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(30));
    sql_observe::count_rows(&mut options);
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the {} test database", scheme(url)))
}

fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or("unknown")
}

/// What a test body may return: nothing, or a `Result` whose error fails the test.
pub trait TestOutcome {
    fn check(self);
}

impl TestOutcome for () {
    fn check(self) {}
}

impl<E: fmt::Debug> TestOutcome for Result<(), E> {
    fn check(self) {
        if let Err(error) = self {
            panic!("test failed: {error:?}");
        }
    }
}

/// Runs `test` against a fresh database on `backend`, then drops the database, whatever happened.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    init_tracing();
    let (db, cleanup) = match create(backend).await {
        Ok(created) => created,
        Err(error) => panic!("could not prepare a {backend} test database: {error:?}"),
    };
    let conn = db.conn.clone();
    let outcome = AssertUnwindSafe(test(db)).catch_unwind().await;
    let _ = conn.close().await;
    let cleaned = cleanup.run().await;
    match outcome {
        Ok(result) => result.check(),
        Err(panic) => std::panic::resume_unwind(panic),
    }
    if let Err(error) = cleaned {
        panic!("could not drop the {backend} test database: {error:?}");
    }
}

/// Declares tests that run once per backend.
///
/// ```ignore
/// mercado_testkit::backend_tests! {
///     async fn a_new_user_has_an_empty_account(db: TestDb) -> anyhow::Result<()> {
///         // arrange, act, assert against db.conn
///         Ok(())
///     }
/// }
/// ```
///
/// Each function becomes a module holding a `sqlite`, a `postgres` and a `mysql` test, so runners
/// list `a_new_user_has_an_empty_account::sqlite`, `…::postgres` and `…::mysql`.
#[macro_export]
macro_rules! backend_tests {
    ($(
        $(#[$meta:meta])*
        async fn $name:ident($db:ident : $db_ty:ty) $(-> $ret:ty)? $body:block
    )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: $db_ty) $(-> $ret)? $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::run($crate::Backend::Sqlite, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(mercado_postgres),
                ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
            )]
            async fn postgres() {
                $crate::run($crate::Backend::Postgres, body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(mercado_mysql),
                ignore = "MariaDB is not configured: set TEST_MYSQL_URL to run this test on it"
            )]
            async fn mysql() {
                $crate::run($crate::Backend::Mysql, body).await;
            }
        }
    )*};
}
