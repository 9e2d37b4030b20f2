//! Mercado's settings: one typed struct, read from the command line, the environment and `.env`
//! (in that order of precedence). Every variable is listed, with a comment, in `.env.example`.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};
use service::db::{DEFAULT_DATABASE_URL, DatabaseSettings};

/// Every setting, grouped by what it configures.
#[derive(Debug, Args)]
pub(crate) struct Settings {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Server")]
pub(crate) struct ServerArgs {
    /// Where to serve HTTP; `0.0.0.0:8000` to be reachable from other machines.
    #[arg(
        long,
        global = true,
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:8000"
    )]
    pub listen_addr: SocketAddr,
    /// A request still running after this long is abandoned (its transaction rolled back) and
    /// answered with 503. Shutting down waits at most this long for the requests in flight.
    #[arg(long, global = true, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

impl ServerArgs {
    pub(crate) fn to_api_settings(&self) -> api::ApiSettings {
        api::ApiSettings {
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Database")]
pub(crate) struct DatabaseArgs {
    /// The database to use: postgres://…, sqlite://…, or mysql://…
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = false)]
    pub database_url: String,
    /// The most connections the pool opens (a small multiple of the database's cores).
    #[arg(
        long,
        global = true,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub database_max_connections: u32,
    /// Connections the pool keeps open even when idle.
    #[arg(
        long,
        global = true,
        env = "DATABASE_MIN_CONNECTIONS",
        default_value_t = 1
    )]
    pub database_min_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[arg(long, global = true, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,
    /// Idle connections above the minimum are closed after this long.
    #[arg(long, global = true, env = "DATABASE_IDLE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub database_idle_timeout: Duration,
    /// Connections are replaced after this long.
    #[arg(long, global = true, env = "DATABASE_MAX_LIFETIME", default_value = "30m", value_parser = humantime::parse_duration)]
    pub database_max_lifetime: Duration,
    /// A connection idle at least this long is pinged before it is handed out.
    #[arg(long, global = true, env = "DATABASE_TEST_IF_IDLE_FOR", default_value = "30s", value_parser = humantime::parse_duration)]
    pub database_test_if_idle_for: Duration,
    /// PostgreSQL: statements running longer than this are cancelled by the server.
    #[arg(long, global = true, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,
    /// PostgreSQL: the name the pool's sessions show in pg_stat_activity.
    #[arg(
        long,
        global = true,
        env = "DATABASE_APPLICATION_NAME",
        default_value = "mercado"
    )]
    pub database_application_name: String,
}

impl DatabaseArgs {
    pub(crate) fn to_settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: creating_sqlite_file(&self.database_url).into(),
            max_connections: self.database_max_connections,
            min_connections: self.database_min_connections,
            acquire_timeout: self.database_acquire_timeout,
            idle_timeout: self.database_idle_timeout,
            max_lifetime: self.database_max_lifetime,
            test_before_acquire_if_idle_for: self.database_test_if_idle_for,
            statement_timeout: self.database_statement_timeout,
            application_name: self.database_application_name.clone(),
        }
    }
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

#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub(crate) struct LogArgs {
    /// What to log, as a tracing filter: `info`, or `info,mercado::sql=debug` to see every
    /// statement. RUST_LOG, when set, wins.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// `text` for people, `json` for log collectors.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Statements slower than this are logged at WARN on `mercado::sql` (the others at DEBUG).
    #[arg(long, env = "SQL_SLOW_THRESHOLD", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub sql_slow_threshold: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::creating_sqlite_file;

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
