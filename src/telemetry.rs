//! The process's tracing subscriber, built once at start-up from [`LogSettings`]: a printer on
//! stderr (text or JSON) filtered by `LOG_LEVEL` or `RUST_LOG`, beside the SQL capture's
//! row-count layer. Tests install their own (`mercado_testkit::init_tracing`), silent unless
//! `TEST_LOG` is set. It may depend on `tracing-subscriber` and `sql-observe`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::{LogFormat, LogSettings};

/// Installs the subscriber; fails if the filter does not parse or one is installed already.
pub fn init(log: &LogSettings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::try_new(filter)?,
        _ => EnvFilter::try_new(&log.log_level)?,
    };
    // The filter is the printer's alone: the row-count layer must see sqlx's TRACE events
    // whatever RUST_LOG says.
    let registry = tracing_subscriber::registry().with(sql_observe::row_count_layer());
    // Logs go to stderr: stdout is for what a command prints (`mercado demo --json | jq`).
    match log.log_format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init()?,
    }
    Ok(())
}
