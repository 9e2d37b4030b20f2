//! The connection pool, built from [`DatabaseSettings`], and the three ways an operation of
//! [`crate::ops`] reaches it: [`begin_write`] for a write, [`begin_read`] for a read of several
//! statements, [`reader`] for a read of one. A read-only operation goes through one of the last
//! two and nothing else, so deciding where reads run (a replica, one day) is a change to them
//! alone.
//!
//! Pool size: a database serves a handful of statements per core at once; more connections only
//! queue inside the server and add context switches. A small multiple of the database server's
//! cores (PostgreSQL's own rule of thumb: cores × 2, plus a few for I/O waits) is the right
//! ceiling, whatever the request count — requests beyond it wait for `acquire_timeout` in the
//! pool, which is cheap, instead of inside PostgreSQL, which is not. The default of 10 fits a
//! 4-core database. SQLite allows one writer at a time; its pool is kept small and writers take
//! the lock up front (`BEGIN IMMEDIATE`, see [`begin_write`]) so that they queue instead of
//! failing.

use std::{convert::Infallible, fmt, str::FromStr, time::Duration};

use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, IsolationLevel, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    ServiceError,
    error::DbFailure,
    retry::{RetryPolicy, with_retry_idempotent},
};

/// A database URL. It may hold a password, so it is kept secret from the moment it is parsed:
/// `Display` and `Debug` show it with the password replaced by `***`, and only
/// [`expose_secret`](DatabaseUrl::expose_secret) gives the real text, to hand to the driver.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL as it is, password included: for the driver, never for a log or a message.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by `***`: the only form of it that may be shown.
    pub fn redacted(&self) -> String {
        redacted_url(self.expose_secret())
    }

    /// The backend the URL names.
    pub fn backend(&self) -> Option<DbBackend> {
        backend_of(self.expose_secret())
    }
}

impl FromStr for DatabaseUrl {
    type Err = Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(url))
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// The redacted form: a URL without a password (such as the default) reads back as itself.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// How to reach the database and how to pool connections to it. [`Default`] holds every
/// default value; the binary's flags take theirs from it.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The database URL; it may hold a password, so it is kept secret.
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a caller waits for a free connection before giving up.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Duration,
    /// Connections are replaced after this long, to spread server-side memory growth.
    pub max_lifetime: Duration,
    /// A connection idle for this long is pinged before use; busy connections are not.
    pub test_before_acquire_if_idle_for: Duration,
    /// PostgreSQL only: the server cancels any statement running longer than this.
    pub statement_timeout: Duration,
    /// PostgreSQL only: how the pool's sessions show in `pg_stat_activity`.
    pub application_name: String,
    /// What sits between the pool and PostgreSQL (`DATABASE_POOLER`): decides which session
    /// state the pool may rely on. See [`DatabasePooler`].
    pub pooler: DatabasePooler,
    /// PostgreSQL only: a streaming replica for the reads that tolerate it
    /// (`DATABASE_REPLICA_URL`); `None` sends every read to `url`. See [`crate::pools`].
    pub replica_url: Option<DatabaseUrl>,
}

/// What sits between the application's pool and PostgreSQL.
///
/// * `None`: the pool talks to PostgreSQL itself (or through a session pooler). The statement
///   timeout is sent as a startup parameter (`options=-c statement_timeout=…`), so it holds for
///   every statement of every session.
/// * `PgbouncerTransaction`: PgBouncer in transaction pooling, where one client connection's
///   statements run on whichever server connection is free. PgBouncer refuses, or with
///   `ignore_startup_parameters` silently drops, the startup `options` and the
///   `extra_float_digits` that sqlx sends, and session state (`SET`, advisory session locks,
///   `LISTEN`) would leak between clients. So the pool sends neither startup parameter; the
///   statement timeout is the role's (`ALTER ROLE … SET statement_timeout`), which every server
///   connection PgBouncer opens takes at login, autocommit statements and transactions alike.
///   Supported: PgBouncer ≥ 1.21 with `max_prepared_statements` > 0 (sqlx names every prepared
///   statement; 1.18 cannot keep them apart — docs/scaling.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatabasePooler {
    #[default]
    None,
    PgbouncerTransaction,
}

impl DatabasePooler {
    /// The setting's spelling: `none`, `pgbouncer-transaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabasePooler::None => "none",
            DatabasePooler::PgbouncerTransaction => "pgbouncer-transaction",
        }
    }

    /// Whether the pool may send startup parameters PgBouncer does not know (`options` with the
    /// statement timeout, `extra_float_digits`).
    pub fn allows_startup_options(self) -> bool {
        self == DatabasePooler::None
    }
}

impl fmt::Display for DatabasePooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatabasePooler {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(DatabasePooler::None),
            "pgbouncer-transaction" => Ok(DatabasePooler::PgbouncerTransaction),
            other => Err(format!(
                "`{other}` is not a pooler: `none` or `pgbouncer-transaction`"
            )),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            // A SQLite file in the working directory, created if missing: `cargo run` on a fresh
            // clone needs no server.
            url: DatabaseUrl::new("sqlite://mercado.db?mode=rwc"),
            max_connections: 10,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            test_before_acquire_if_idle_for: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(30),
            application_name: "mercado".to_owned(),
            pooler: DatabasePooler::None,
            replica_url: None,
        }
    }
}

impl DatabaseSettings {
    /// Settings for `url` with every other value at its default.
    pub fn for_url(url: impl Into<DatabaseUrl>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The URL with any password replaced by `***`: the only form of it that may be shown.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }

    /// The backend the URL names.
    pub fn backend(&self) -> Option<DbBackend> {
        self.url.backend()
    }
}

/// The backend a database URL names, from its scheme.
pub fn backend_of(url: &str) -> Option<DbBackend> {
    match url.split(':').next()? {
        "postgres" | "postgresql" => Some(DbBackend::Postgres),
        "sqlite" => Some(DbBackend::Sqlite),
        "mysql" | "mariadb" => Some(DbBackend::MySql),
        _ => None,
    }
}

/// `url` with its password, if any, replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        // Not a URL we can take apart: show nothing of it rather than risk a password.
        Err(_) => "<unparseable database URL>".to_owned(),
    }
}

/// Why the pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DATABASE_URL {url} names no supported database (postgres, sqlite or mysql)")]
    UnsupportedUrl { url: String },
    #[error("could not connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Builds the pool from `settings`. Error messages show the URL only with its password redacted.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, ConnectError> {
    connect_with(settings, |_| {}).await
}

/// [`connect`], letting `configure` adjust the options first: the application uses it to turn
/// on what its SQL observation needs (`sql_observe::count_rows`), which this crate knows nothing
/// of.
pub async fn connect_with(
    settings: &DatabaseSettings,
    configure: impl FnOnce(&mut ConnectOptions),
) -> Result<DatabaseConnection, ConnectError> {
    let url = settings.url.expose_secret();
    let backend = settings
        .backend()
        .ok_or_else(|| ConnectError::UnsupportedUrl {
            url: settings.redacted_url(),
        })?;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections.min(settings.max_connections))
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        .test_before_acquire_if_idle_for(settings.test_before_acquire_if_idle_for);
    if backend == DbBackend::Postgres {
        options.set_application_name(settings.application_name.clone());
        if settings.pooler.allows_startup_options() {
            options.statement_timeout(settings.statement_timeout);
        }
        let pooler = settings.pooler;
        options.map_sqlx_postgres_opts(move |pg| without_unknown_startup_parameters(pooler, pg));
    }
    configure(&mut options);
    Database::connect(options)
        .await
        .map_err(|error| ConnectError::Unreachable {
            url: settings.redacted_url(),
            reason: scrub(&error.to_string(), url),
        })
}

/// Behind PgBouncer in transaction pooling, no startup parameter it does not know: it refuses a
/// client that sends one (`unsupported startup parameter`). sqlx reads every result in binary,
/// where `extra_float_digits` has no effect, so it is not sent; the statement timeout is the
/// role's (see [`DatabasePooler`]). Every connection Mercado opens to PostgreSQL goes through
/// this: the pool's, and the health probe's ([`crate::health`]).
pub(crate) fn without_unknown_startup_parameters(
    pooler: DatabasePooler,
    pg: sea_orm::sqlx::postgres::PgConnectOptions,
) -> sea_orm::sqlx::postgres::PgConnectOptions {
    if pooler.allows_startup_options() {
        pg
    } else {
        pg.extra_float_digits(None::<i8>)
    }
}

/// Removes every occurrence of the raw URL and its password from a driver's message.
fn scrub(message: &str, url: &str) -> String {
    let mut message = message.replace(url, &redacted_url(url));
    let password = Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .filter(|password| !password.is_empty());
    if let Some(password) = password {
        message = message.replace(&password, "***");
    }
    message
}

/// Checks that the database answers, for readiness probes: a `SELECT 1` through SeaORM, so it is
/// captured and counted like any statement (the driver's own ping is invisible to the capture,
/// and would make `/readyz` claim it sent none). A pooled connection the server or PgBouncer has
/// closed says nothing of the database: the ping runs again on a fresh one ([`crate::retry`],
/// within the caller's bound), as any read would, so that a balancer does not take a healthy
/// process out of rotation for it. Any other failure — no connection, a closed pool, a
/// statement that errs — and a loss that persists mean the database does not answer, so every
/// one is [`ServiceError::Unavailable`].
pub async fn ping(db: &DatabaseConnection) -> Result<(), ServiceError> {
    let select_one = || async {
        let statement = Statement::from_string(db.get_database_backend(), "SELECT 1");
        match db.query_one_raw(statement).await {
            Ok(_) => Ok(()),
            Err(error) if DbFailure::of(&error) == DbFailure::ConnectionLost => {
                Err(ServiceError::ConnectionLost(error))
            }
            Err(error) => Err(ServiceError::Unavailable(error)),
        }
    };
    with_retry_idempotent(RetryPolicy::default(), select_one)
        .await
        .map_err(|error| match error {
            ServiceError::ConnectionLost(error) | ServiceError::CommitOutcomeUnknown(error) => {
                ServiceError::Unavailable(error)
            }
            other => other,
        })
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so concurrent writers wait for each other (up to the busy timeout)
/// instead of failing when a read lock cannot be upgraded.
pub async fn begin_write<C>(db: &C) -> Result<C::Transaction, DbErr>
where
    C: TransactionTrait,
{
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Begins a read-only transaction at REPEATABLE READ, so that the statements of one read see
/// one snapshot (SQLite ignores both settings; its transactions are serializable anyway). For
/// reads of several statements; a read of one takes [`reader`].
pub async fn begin_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: Some(IsolationLevel::RepeatableRead),
        access_mode: Some(AccessMode::ReadOnly),
        sqlite_transaction_mode: None,
    })
    .await
}

/// Where a read-only operation of a single statement runs: on the pool, with no transaction.
/// One statement sees one snapshot by itself, so `BEGIN` and `COMMIT` around it would only add
/// two round trips. Today this is the pool itself; it exists so that every such read is marked
/// as one, in the same place as [`begin_read`].
pub fn reader(db: &DatabaseConnection) -> &DatabaseConnection {
    db
}

/// Commits `txn`, telling apart the two ways a lost connection can fail it. Every failure
/// before this call changed nothing, so a [`ServiceError::ConnectionLost`] there may run again
/// ([`crate::retry`]). A connection that breaks *here*, with COMMIT sent or on its way, leaves
/// the outcome unknown — the server may have committed before the connection died — and is
/// reported as [`ServiceError::CommitOutcomeUnknown`], which a write never retries blindly. Any
/// other failure (a serialization failure at commit, say) is classified as usual.
pub async fn commit(txn: DatabaseTransaction) -> Result<(), ServiceError> {
    txn.commit()
        .await
        .map_err(|error| match ServiceError::from(error) {
            ServiceError::ConnectionLost(error) => ServiceError::CommitOutcomeUnknown(error),
            other => other,
        })
}

/// Ends `txn` as the work done in it turned out: COMMIT (through [`commit`]) after a success, an
/// explicit ROLLBACK after a failure. A transaction that is merely dropped rolls back too, but
/// its connection goes back to the pool with the ROLLBACK still unsent and is closed (see
/// [`cancel_abandoned_statements`]): ending it here keeps the connection for the next request,
/// which matters for the refusals (insufficient stock, a taken email, a 404) that are part of
/// normal traffic. A ROLLBACK that fails in turn changes nothing for the caller: the work's own
/// error is the answer, and the connection is closed instead.
pub async fn finish<T>(
    txn: DatabaseTransaction,
    result: Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    match result {
        Ok(value) => {
            commit(txn).await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::debug!(%rollback, "the rollback after a failure failed; the connection is dropped");
            }
            Err(error)
        }
    }
}

/// How often PostgreSQL checks, while a statement runs, that its client is still there.
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// PostgreSQL: makes a statement whose caller went away stop instead of running on. A request
/// that times out or whose client disconnects drops its future, and with it the transaction
/// and the connection in the middle of a statement; sqlx then waits, in the background, for the
/// statement to finish before giving the connection back — a statement blocked on a lock would
/// keep its backend and its pool slot for as long as the lock is held. With this, a connection
/// given back with bytes still unsent (the ROLLBACK that dropping a transaction queues) is
/// closed instead (operations end their refusals with [`finish`], which leaves nothing unsent)
/// — and each connection asks the server (PostgreSQL 14 and later) to check every
/// [`CLIENT_CHECK_INTERVAL`] whether its client is still connected
/// (`client_connection_check_interval`): the server then cancels the statement and rolls the
/// transaction back. Nothing is ever committed by it: the COMMIT was never sent. Behind a
/// transaction pooler (`pooler`) that per-connection `SET` would stick to whichever server
/// connection ran it, so it is not sent there: behind one, a statement stops only as the
/// pooler makes it stop.
pub fn cancel_abandoned_statements(options: &mut ConnectOptions, pooler: DatabasePooler) {
    use sea_orm::sqlx::{self, Connection as _};
    let session_settings_allowed = pooler.allows_startup_options();
    options.map_sqlx_postgres_pool_opts(move |pool| {
        pool.after_connect(move |connection, _| {
            Box::pin(async move {
                if session_settings_allowed
                    && connection
                        .server_version_num()
                        .is_some_and(|v| v >= 140_000)
                {
                    let interval = format!(
                        "SET client_connection_check_interval = {}",
                        CLIENT_CHECK_INTERVAL.as_millis()
                    );
                    sqlx::Executor::execute(&mut *connection, sqlx::AssertSqlSafe(interval))
                        .await?;
                }
                Ok(())
            })
        })
        .after_release(|connection, _| {
            Box::pin(async move {
                // Bytes still to send mean the transaction was dropped, not finished: its
                // ROLLBACK is queued, and a statement may still run. Waiting for it could take
                // as long as what blocks it; closing the connection ends it now.
                if connection.should_flush() {
                    Err(sqlx::Error::Protocol(
                        "the connection was given back mid-transaction (its request was \
                         abandoned, or it failed); closing it so that the server rolls back \
                         at once"
                            .to_owned(),
                    ))
                } else {
                    Ok(true)
                }
            })
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_redacted() {
        let shown = redacted_url("postgres://app:s3cret@db.example:5432/mercado");
        assert_eq!(shown, "postgres://app:***@db.example:5432/mercado");
    }

    #[test]
    fn a_url_without_password_is_shown_as_is() {
        assert_eq!(
            redacted_url("sqlite://mercado.db?mode=rwc"),
            "sqlite://mercado.db?mode=rwc"
        );
    }

    #[test]
    fn settings_debug_output_never_shows_the_password() {
        let settings = DatabaseSettings::for_url("postgres://app:s3cret@localhost/mercado");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@localhost"), "{shown}");
    }

    #[test]
    fn a_database_url_is_shown_redacted_and_exposed_only_on_request() {
        let url = DatabaseUrl::from("postgres://app:s3cret@localhost/mercado");
        assert_eq!(url.to_string(), "postgres://app:***@localhost/mercado");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            url.expose_secret(),
            "postgres://app:s3cret@localhost/mercado"
        );
    }

    #[test]
    fn the_default_url_reads_back_as_itself() {
        // The binary's `--database-url` default is this URL's `Display`, parsed again.
        let default = DatabaseSettings::default().url;
        assert_eq!(default.to_string(), default.expose_secret());
    }

    #[tokio::test]
    async fn a_connection_error_never_shows_the_password() {
        let mut settings = DatabaseSettings::for_url("postgres://app:s3cret@127.0.0.1:1/mercado");
        settings.acquire_timeout = Duration::from_secs(1);
        let error = connect(&settings)
            .await
            .expect_err("nothing listens on port 1");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_by_name() {
        let settings = DatabaseSettings::for_url("oracle://scott:tiger@db/x");
        let error = connect(&settings)
            .await
            .expect_err("oracle is not supported");
        assert!(
            error.to_string().contains("oracle://scott:***@db/x"),
            "{error}"
        );
    }
}
