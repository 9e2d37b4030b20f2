//! The tracing subscriber, built once at start-up from the logging settings.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::{LogArgs, LogFormat};

pub(crate) fn init(log: &LogArgs) -> anyhow::Result<()> {
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
