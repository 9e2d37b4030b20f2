//! Mercado's settings, typed: [`Settings`] is what [`crate::startup`] builds the application from.
//! The command line, the environment and `.env` fill it (in that order of precedence) through
//! [`SettingsArgs`]; a test starts from [`Settings::default`] and changes what it needs.
//!
//! Every default is written once, in the `Default` of the typed struct that uses it —
//! `service::db::DatabaseSettings`, `api::ApiSettings`, and this module's [`ServerSettings`] and
//! [`LogSettings`] — and each flag takes its default from there, so `--help` shows exactly what
//! an unset variable means. Every variable is listed, with a comment, in `.env.example`.
//!
//! `service` and `api` are libraries that know nothing of a command line, and the data-access
//! layer should not depend on clap for the binary's sake. So the database settings get their
//! command-line face here, [`DatabaseArgs`]: its fields already have their final types (the URL a
//! [`DatabaseUrl`], secret from the moment it is parsed), and it becomes a `DatabaseSettings` by
//! moving them across, nothing parsed or defaulted on the way. This module may depend on
//! `service`, `api` and clap.

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::{Args, ValueEnum};
use service::db::{DatabasePooler, DatabaseSettings, DatabaseUrl};

/// Every setting, grouped by what it configures.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub server: ServerSettings,
    pub log: LogSettings,
}

/// The command-line and environment form of [`Settings`]: flatten it into a clap parser, then
/// turn it into `Settings` with `From`.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    log: LogSettings,
    #[command(flatten)]
    server: ServerSettings,
}

impl From<SettingsArgs> for Settings {
    fn from(args: SettingsArgs) -> Self {
        Settings {
            database: args.database.into(),
            server: args.server,
            log: args.log,
        }
    }
}

/// How `serve` listens and answers.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerSettings {
    /// Where to serve HTTP; `0.0.0.0:8000` to be reachable from other machines.
    #[arg(
        long,
        global = true,
        env = "LISTEN_ADDR",
        default_value_t = ServerSettings::default().listen_addr
    )]
    pub listen_addr: SocketAddr,
    /// A request still running after this long is abandoned (its transaction rolled back) and
    /// answered with 503. Shutting down waits at most this long for the requests in flight.
    #[arg(
        long,
        global = true,
        env = "REQUEST_TIMEOUT",
        default_value = human(ServerSettings::default().request_timeout),
        value_parser = humantime::parse_duration,
    )]
    pub request_timeout: Duration,
    /// The most requests served at once; one more is answered 503 with Retry-After at once
    /// (load shedding) instead of queueing. /healthz is never shed.
    #[arg(
        long,
        global = true,
        env = "MAX_CONCURRENT_REQUESTS",
        default_value_t = ServerSettings::default().max_concurrent_requests,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_concurrent_requests: u32,
    /// Which SQL headers responses carry: `full` (x-query-count, server-timing and, on an N+1,
    /// x-n-plus-one naming the statement and its call site), `count` (the first two), `off`
    /// (none). The N+1 warning in the log and the inspector are the same whichever.
    #[arg(
        long,
        global = true,
        env = "SQL_HEADERS",
        value_enum,
        default_value_t = ServerSettings::default().sql_headers,
    )]
    pub sql_headers: SqlHeadersSetting,
    /// Serve the SQL inspector at /_inspector: every request's statements, values, timings and
    /// N+1 findings. Development only (it shows the SQL and values of every request); refused
    /// on a non-loopback LISTEN_ADDR unless --inspect-on-public-address is given too.
    #[arg(long, global = true, env = "INSPECT")]
    pub inspect: bool,
    /// Allow --inspect on a LISTEN_ADDR other machines can reach: anyone who reaches it sees
    /// every request's SQL and values.
    #[arg(long, global = true, env = "INSPECT_ON_PUBLIC_ADDRESS")]
    pub inspect_on_public_address: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        let api = api::ApiSettings::default();
        Self {
            listen_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            request_timeout: api.request_timeout,
            max_concurrent_requests: u32::try_from(api.max_concurrent_requests).unwrap_or(u32::MAX),
            sql_headers: api.sql_headers.into(),
            inspect: false,
            inspect_on_public_address: false,
        }
    }
}

impl ServerSettings {
    /// What the HTTP layer needs of these settings (the inspector, which needs the connection,
    /// is added by `startup`).
    pub fn api(&self) -> api::ApiSettings {
        api::ApiSettings {
            request_timeout: self.request_timeout,
            max_concurrent_requests: usize::try_from(self.max_concurrent_requests)
                .unwrap_or(usize::MAX),
            sql_headers: self.sql_headers.into(),
            inspector: None,
        }
    }

    /// Refuses `--inspect` on an address other machines can reach, unless it is forced.
    pub fn check_inspector_address(&self) -> anyhow::Result<()> {
        if self.inspect && !self.listen_addr.ip().is_loopback() && !self.inspect_on_public_address {
            anyhow::bail!(
                "refusing to serve the SQL inspector on {}, an address other machines can reach: \
                 it shows the SQL and bound values of every request. Listen on a loopback \
                 address (LISTEN_ADDR=127.0.0.1:8000), or add --inspect-on-public-address \
                 (INSPECT_ON_PUBLIC_ADDRESS=true) if you mean it",
                self.listen_addr
            );
        }
        Ok(())
    }
}

/// `SQL_HEADERS`, as the command line takes it: `api::SqlHeaders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlHeadersSetting {
    Full,
    Count,
    Off,
}

impl From<api::SqlHeaders> for SqlHeadersSetting {
    fn from(headers: api::SqlHeaders) -> Self {
        match headers {
            api::SqlHeaders::Full => SqlHeadersSetting::Full,
            api::SqlHeaders::Count => SqlHeadersSetting::Count,
            api::SqlHeaders::Off => SqlHeadersSetting::Off,
        }
    }
}

impl From<SqlHeadersSetting> for api::SqlHeaders {
    fn from(setting: SqlHeadersSetting) -> Self {
        match setting {
            SqlHeadersSetting::Full => api::SqlHeaders::Full,
            SqlHeadersSetting::Count => api::SqlHeaders::Count,
            SqlHeadersSetting::Off => api::SqlHeaders::Off,
        }
    }
}

/// What to log, and how.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogSettings {
    /// What to log, as a tracing filter: `info`, or `info,mercado::sql=debug` to see every
    /// statement. RUST_LOG, when set, wins.
    #[arg(
        long,
        global = true,
        env = "LOG_LEVEL",
        default_value_t = LogSettings::default().log_level,
    )]
    pub log_level: String,
    /// `text` for people, `json` for log collectors.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value_t = LogSettings::default().log_format,
    )]
    pub log_format: LogFormat,
    /// Statements slower than this are logged at WARN on `mercado::sql` (the others at DEBUG).
    #[arg(
        long,
        env = "SQL_SLOW_THRESHOLD",
        default_value = human(LogSettings::default().sql_slow_threshold),
        value_parser = humantime::parse_duration,
    )]
    pub sql_slow_threshold: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            // The capture's own threshold, so the flag and the configuration cannot disagree.
            sql_slow_threshold: api::sql_scope::observe_config().slow_threshold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The command-line face of `service::db::DatabaseSettings` (see the module's documentation for
/// why it is a struct of its own): the same fields, each flag defaulting to the field's default.
#[derive(Debug, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// The database to use: postgres://…, sqlite://…, or mysql://…
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value_t = DatabaseSettings::default().url,
        value_parser = database_url,
        hide_env_values = true,
    )]
    database_url: DatabaseUrl,
    /// The most connections the pool opens (a small multiple of the database's cores).
    #[arg(
        long,
        global = true,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = DatabaseSettings::default().max_connections,
    )]
    database_max_connections: u32,
    /// Connections the pool keeps open even when idle.
    #[arg(
        long,
        global = true,
        env = "DATABASE_MIN_CONNECTIONS",
        default_value_t = DatabaseSettings::default().min_connections,
    )]
    database_min_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[arg(
        long,
        global = true,
        env = "DATABASE_ACQUIRE_TIMEOUT",
        default_value = human(DatabaseSettings::default().acquire_timeout),
        value_parser = humantime::parse_duration,
    )]
    database_acquire_timeout: Duration,
    /// Idle connections above the minimum are closed after this long.
    #[arg(
        long,
        global = true,
        env = "DATABASE_IDLE_TIMEOUT",
        default_value = human(DatabaseSettings::default().idle_timeout),
        value_parser = humantime::parse_duration,
    )]
    database_idle_timeout: Duration,
    /// Connections are replaced after this long.
    #[arg(
        long,
        global = true,
        env = "DATABASE_MAX_LIFETIME",
        default_value = human(DatabaseSettings::default().max_lifetime),
        value_parser = humantime::parse_duration,
    )]
    database_max_lifetime: Duration,
    /// A connection idle at least this long is pinged before it is handed out.
    #[arg(
        long,
        global = true,
        env = "DATABASE_TEST_IF_IDLE_FOR",
        default_value = human(DatabaseSettings::default().test_before_acquire_if_idle_for),
        value_parser = humantime::parse_duration,
    )]
    database_test_if_idle_for: Duration,
    /// PostgreSQL: statements running longer than this are cancelled by the server.
    #[arg(
        long,
        global = true,
        env = "DATABASE_STATEMENT_TIMEOUT",
        default_value = human(DatabaseSettings::default().statement_timeout),
        value_parser = humantime::parse_duration,
    )]
    database_statement_timeout: Duration,
    /// PostgreSQL: the name the pool's sessions show in pg_stat_activity.
    #[arg(
        long,
        global = true,
        env = "DATABASE_APPLICATION_NAME",
        default_value_t = DatabaseSettings::default().application_name,
    )]
    database_application_name: String,
    /// PostgreSQL: what sits between the pool and the server. `none` (directly, or a session
    /// pooler) or `pgbouncer-transaction` (PgBouncer ≥ 1.21 in transaction pooling with
    /// max_prepared_statements): then no startup parameter PgBouncer refuses is sent, and the
    /// statement timeout must be set on the role (ALTER ROLE … SET statement_timeout).
    #[arg(
        long,
        global = true,
        env = "DATABASE_POOLER",
        default_value_t = DatabaseSettings::default().pooler,
    )]
    database_pooler: DatabasePooler,
    /// PostgreSQL: a streaming replica for the reads that tolerate one (unset: every read goes
    /// to DATABASE_URL). A client reads its own writes by sending back the x-read-after-lsn
    /// header of a write's response.
    #[arg(
        long,
        global = true,
        env = "DATABASE_REPLICA_URL",
        value_parser = database_url,
        hide_env_values = true,
    )]
    database_replica_url: Option<DatabaseUrl>,
}

impl From<DatabaseArgs> for DatabaseSettings {
    fn from(args: DatabaseArgs) -> Self {
        DatabaseSettings {
            url: args.database_url,
            max_connections: args.database_max_connections,
            min_connections: args.database_min_connections,
            acquire_timeout: args.database_acquire_timeout,
            idle_timeout: args.database_idle_timeout,
            max_lifetime: args.database_max_lifetime,
            test_before_acquire_if_idle_for: args.database_test_if_idle_for,
            statement_timeout: args.database_statement_timeout,
            application_name: args.database_application_name,
            pooler: args.database_pooler,
            replica_url: args.database_replica_url,
        }
    }
}

/// A duration as the flags take it and `--help` shows it: `5s`, `10m`, `200ms`.
fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Parses `--database-url` straight into a secret. A SQLite file is created when missing.
fn database_url(text: &str) -> Result<DatabaseUrl, Infallible> {
    Ok(DatabaseUrl::new(creating_sqlite_file(text)))
}

/// A SQLite URL that creates its file when missing (`mode=rwc`) unless it names a mode itself;
/// any other URL unchanged. sqlx opens an existing file only, by default.
fn creating_sqlite_file(url: &str) -> String {
    let is_file = url.starts_with("sqlite:") && !url.contains(":memory:");
    let names_mode = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("mode=")));
    if !is_file || names_mode {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

#[cfg(test)]
mod tests {
    use clap::{Command, FromArgMatches};

    use super::*;

    /// The flags as the binary has them, without their environment variables, so that a test
    /// sees the defaults whatever the environment it runs in holds.
    fn flags_without_env() -> Command {
        SettingsArgs::augment_args(Command::new("mercado")).mut_args(|arg| arg.env(None::<&str>))
    }

    #[test]
    fn unset_flags_parse_to_the_typed_defaults() -> anyhow::Result<()> {
        let matches = flags_without_env().try_get_matches_from(["mercado"])?;

        let parsed = Settings::from(SettingsArgs::from_arg_matches(&matches)?);

        assert_eq!(format!("{parsed:?}"), format!("{:?}", Settings::default()));
        Ok(())
    }

    #[test]
    fn help_shows_every_default_as_before() {
        let help = flags_without_env().render_long_help().to_string();

        for default in [
            "[default: sqlite://mercado.db?mode=rwc]",
            "[default: 10]",
            "[default: 1]",
            "[default: 5s]",
            "[default: 10m]",
            "[default: 30m]",
            "[default: 30s]",
            "[default: mercado]",
            "[default: none]",
            "[default: info]",
            "[default: text]",
            "[default: 200ms]",
            "[default: 127.0.0.1:8000]",
            "[default: 256]",
            "[default: full]",
        ] {
            assert!(help.contains(default), "{default} missing from:\n{help}");
        }
    }

    #[test]
    fn a_database_url_flag_is_kept_secret_from_the_start() -> anyhow::Result<()> {
        let matches = flags_without_env().try_get_matches_from([
            "mercado",
            "--database-url",
            "postgres://app:s3cret@db.example/mercado",
        ])?;

        let parsed = Settings::from(SettingsArgs::from_arg_matches(&matches)?);

        assert!(!format!("{parsed:?}").contains("s3cret"));
        assert_eq!(
            parsed.database.url.expose_secret(),
            "postgres://app:s3cret@db.example/mercado"
        );
        Ok(())
    }

    #[test]
    fn the_pooler_flag_takes_pgbouncer_transaction_and_refuses_anything_else() -> anyhow::Result<()>
    {
        let matches = flags_without_env().try_get_matches_from([
            "mercado",
            "--database-pooler",
            "pgbouncer-transaction",
        ])?;
        let parsed = Settings::from(SettingsArgs::from_arg_matches(&matches)?);
        assert_eq!(parsed.database.pooler, DatabasePooler::PgbouncerTransaction);

        let refused =
            flags_without_env().try_get_matches_from(["mercado", "--database-pooler", "pgpool"]);
        assert!(refused.is_err(), "an unknown pooler is refused");
        Ok(())
    }

    #[test]
    fn a_replica_url_flag_is_kept_secret_and_unset_by_default() -> anyhow::Result<()> {
        let matches = flags_without_env().try_get_matches_from(["mercado"])?;
        let parsed = Settings::from(SettingsArgs::from_arg_matches(&matches)?);
        assert!(parsed.database.replica_url.is_none());

        let matches = flags_without_env().try_get_matches_from([
            "mercado",
            "--database-replica-url",
            "postgres://app:s3cret@replica.example/mercado",
        ])?;
        let parsed = Settings::from(SettingsArgs::from_arg_matches(&matches)?);
        assert!(!format!("{parsed:?}").contains("s3cret"));
        assert_eq!(
            parsed
                .database
                .replica_url
                .as_ref()
                .map(DatabaseUrl::expose_secret),
            Some("postgres://app:s3cret@replica.example/mercado")
        );
        Ok(())
    }

    #[test]
    fn the_inspector_is_off_by_default_and_refused_on_a_public_address_unless_forced()
    -> anyhow::Result<()> {
        let parse = |args: &[&str]| -> anyhow::Result<Settings> {
            let matches = flags_without_env()
                .try_get_matches_from(std::iter::once("mercado").chain(args.iter().copied()))?;
            Ok(Settings::from(SettingsArgs::from_arg_matches(&matches)?))
        };
        let default = parse(&[])?;
        assert!(!default.server.inspect);
        assert_eq!(default.server.sql_headers, SqlHeadersSetting::Full);
        default.server.check_inspector_address()?;

        parse(&["--inspect"])?.server.check_inspector_address()?;
        parse(&["--inspect", "--listen-addr", "[::1]:8000"])?
            .server
            .check_inspector_address()?;
        let public = parse(&["--inspect", "--listen-addr", "0.0.0.0:8000"])?;
        let refused = public.server.check_inspector_address();
        assert!(
            refused.is_err_and(|e| e.to_string().contains("--inspect-on-public-address")),
            "a public address is refused, naming the flag that forces it"
        );
        parse(&[
            "--inspect",
            "--listen-addr",
            "0.0.0.0:8000",
            "--inspect-on-public-address",
        ])?
        .server
        .check_inspector_address()?;
        parse(&["--listen-addr", "0.0.0.0:8000"])?
            .server
            .check_inspector_address()?;

        assert_eq!(
            parse(&["--sql-headers", "count"])?.server.sql_headers,
            SqlHeadersSetting::Count
        );
        assert!(parse(&["--sql-headers", "none"]).is_err());
        Ok(())
    }

    #[test]
    fn a_sqlite_file_url_without_a_mode_creates_its_file() {
        assert_eq!(
            creating_sqlite_file("sqlite://mercado.db"),
            "sqlite://mercado.db?mode=rwc"
        );
        assert_eq!(
            creating_sqlite_file("sqlite://mercado.db?cache=shared"),
            "sqlite://mercado.db?cache=shared&mode=rwc"
        );
    }

    #[test]
    fn other_urls_are_left_as_they_are() {
        for url in [
            "sqlite://mercado.db?mode=ro",
            "sqlite::memory:",
            "postgres://postgres@127.0.0.1:5432/mercado",
        ] {
            assert_eq!(creating_sqlite_file(url), url);
        }
    }
}
