// The crate's documentation is its README, whose every code block is a doc test.
#![doc = include_str!("../README.md")]

mod callsite;
mod capture;
mod log;
pub mod report;
// Without `row-counts`, nothing fills the counts, and the parts that read sqlx's events rest.
#[cfg_attr(not(feature = "row-counts"), allow(dead_code))]
mod rows;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectOptions, DatabaseConnection};
use serde::Serialize;

pub use capture::{
    Attempt, CapturedStatement, Scope, ScopeKind, attempt, in_current_scope, scope, spawn,
    unobserved,
};
pub use log::{DEFAULT_TARGET, SqlLog, StatementLine, TracingLog};
pub use report::{Finding, FindingKind, PagedRead, ScopeReport};
#[cfg(feature = "row-counts")]
pub use rows::layer as row_count_layer;
#[cfg(feature = "testing")]
pub use testing::{assert_no_growth, assert_statement_count, assert_statements_at_most};

#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

/// What the detector does with what it finds when a scope ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorMode {
    /// Statements are captured and counted; nothing is analysed.
    Off,
    /// Each finding is logged at WARN (see [`ObserveConfig::log`]); the report carries them too.
    #[default]
    Warn,
    /// As `Warn`, and the scope panics when it finds an N+1 or a duplicate: for tests.
    Raise,
}

/// A pattern the detector must not report, and why it is intentional.
#[derive(Debug, Clone, Serialize)]
pub struct SafelistEntry {
    /// A piece of the fingerprint the entry applies to (e.g. `UPDATE "inventory"`).
    pub fingerprint_contains: String,
    /// If set, the entry applies only when the call site contains this (a function path).
    pub call_site_contains: Option<String>,
    /// Why repeating this statement is right; shown with every suppressed finding.
    pub reason: String,
}

impl SafelistEntry {
    pub fn new(fingerprint_contains: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            fingerprint_contains: fingerprint_contains.into(),
            call_site_contains: None,
            reason: reason.into(),
        }
    }

    /// Restricts the entry to statements issued from a call site containing `function`.
    pub fn in_function(mut self, function: impl Into<String>) -> Self {
        self.call_site_contains = Some(function.into());
        self
    }

    pub(crate) fn matches(&self, fingerprint: &str, call_site: Option<&str>) -> bool {
        fingerprint.contains(&self.fingerprint_contains)
            && self
                .call_site_contains
                .as_deref()
                .is_none_or(|wanted| call_site.is_some_and(|site| site.contains(wanted)))
    }
}

/// How statements are logged and analysed.
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// Where statements and findings are logged: [`TracingLog`] (target [`DEFAULT_TARGET`]) by
    /// default, or the application's own target through [`tracing_log!`].
    pub log: Arc<dyn SqlLog>,
    pub mode: DetectorMode,
    /// Statements slower than this are logged at WARN instead of DEBUG.
    pub slow_threshold: Duration,
    /// Columns whose bound values are never logged or captured (shown as `'***'`).
    pub secret_columns: Vec<String>,
    pub safelist: Vec<SafelistEntry>,
    /// Crates whose functions count as call sites: the innermost frame from one of them is
    /// reported, by crate name as it appears in paths (`my_app`, not `my-app`). Empty (the
    /// default), no call site is named.
    pub own_crates: Vec<String>,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            log: Arc::new(TracingLog),
            mode: DetectorMode::Warn,
            slow_threshold: Duration::from_millis(200),
            secret_columns: Vec::new(),
            safelist: Vec::new(),
            own_crates: Vec::new(),
        }
    }
}

impl ObserveConfig {
    pub fn with_mode(mut self, mode: DetectorMode) -> Self {
        self.mode = mode;
        self
    }

    pub fn with_slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    pub fn safelist(mut self, entry: SafelistEntry) -> Self {
        self.safelist.push(entry);
        self
    }

    /// Counts `name`'s functions as call sites (see [`ObserveConfig::own_crates`]).
    pub fn with_own_crate(mut self, name: impl Into<String>) -> Self {
        self.own_crates.push(name.into());
        self
    }

    /// Never logs or captures values bound to `column` (a column name, case-insensitive).
    pub fn with_secret_column(mut self, column: impl Into<String>) -> Self {
        self.secret_columns.push(column.into());
        self
    }

    /// Logs statements and findings to `log` instead of [`TracingLog`].
    pub fn log_to(mut self, log: impl SqlLog + 'static) -> Self {
        self.log = Arc::new(log);
        self
    }

    pub(crate) fn is_secret(&self, column: &str) -> bool {
        self.secret_columns
            .iter()
            .any(|secret| secret.eq_ignore_ascii_case(column))
    }
}

/// Logs and captures every statement `conn` runs from now on. Call it once, right after
/// connecting and **before** cloning the connection into application state: the callback is
/// stored in the connection value, so clones taken earlier do not have it. A second call
/// replaces the first. It has no effect on mock or proxy connections.
pub fn install(conn: &mut DatabaseConnection, config: ObserveConfig) {
    let config = Arc::new(config);
    conn.set_metric_callback(move |info| capture::record(&config, info));
}

/// Turns on sqlx's per-statement events, the source of the row counts [`row_count_layer`]
/// captures. They are emitted at TRACE on `sqlx::query`, slow ones included (this crate logs
/// slow statements itself, through [`ObserveConfig::log`]), so `RUST_LOG=debug` does not print
/// every statement twice; a subscriber without the layer or a filter that admits them costs
/// nothing.
pub fn count_rows(options: &mut ConnectOptions) {
    rows::events_turned_on_for(options.get_url());
    options
        .sqlx_logging(true)
        .sqlx_logging_level(::log::LevelFilter::Trace)
        .sqlx_slow_statements_logging_settings(::log::LevelFilter::Trace, Duration::MAX);
}
