//! Where statements and findings are logged.
//!
//! A `tracing` target must be a constant known where the event is written, so a target chosen by
//! the application cannot be a runtime string in this crate. Instead the configuration holds a
//! [`SqlLog`]: [`TracingLog`] logs on this crate's own target, and [`tracing_log!`] writes a
//! logger for the application's target in the application's crate, where it is a constant.

use std::fmt;

use crate::{Finding, Scope};

/// One statement, as it is logged.
#[derive(Debug)]
pub struct StatementLine<'a> {
    /// The SQL with its placeholders.
    pub sql: &'a str,
    /// The bound values as SQL literals, secret ones as `'***'`, e.g. `[1, 'alice']`.
    pub params: &'a str,
    pub elapsed_ms: f64,
    /// Rows returned or affected, when known.
    pub rows: Option<u64>,
    /// The name of the scope it ran in, `-` outside one.
    pub scope: &'a str,
    pub failed: bool,
}

/// A sink for the statement log and the detector's warnings.
pub trait SqlLog: Send + Sync + fmt::Debug {
    /// Whether a statement would be written: at WARN if `slow`, else at DEBUG. Asked before any
    /// formatting, so that an unlogged statement costs nothing.
    fn enabled(&self, slow: bool) -> bool;
    /// Writes a statement: at WARN if `slow`, else at DEBUG.
    fn statement(&self, line: &StatementLine<'_>, slow: bool);
    /// Writes one finding of a scope, at WARN.
    fn finding(&self, scope: &Scope, finding: &Finding);
}

/// Writes a [`SqlLog`] for the `tracing` target `$target` (a string literal or constant), in
/// the calling crate, and evaluates to it:
///
/// ```
/// let config = sql_observe::ObserveConfig::default()
///     .log_to(sql_observe::tracing_log!("myapp::sql"));
/// # let _ = config;
/// ```
#[macro_export]
macro_rules! tracing_log {
    ($target:expr) => {{
        #[derive(Debug)]
        struct TargetLog;
        impl $crate::SqlLog for TargetLog {
            fn enabled(&self, slow: bool) -> bool {
                if slow {
                    $crate::__private::tracing::enabled!(
                        target: $target,
                        $crate::__private::tracing::Level::WARN
                    )
                } else {
                    $crate::__private::tracing::enabled!(
                        target: $target,
                        $crate::__private::tracing::Level::DEBUG
                    )
                }
            }
            fn statement(&self, line: &$crate::StatementLine<'_>, slow: bool) {
                if slow {
                    $crate::__private::tracing::warn!(
                        target: $target,
                        elapsed_ms = line.elapsed_ms,
                        rows = line.rows,
                        params = %line.params,
                        scope = %line.scope,
                        failed = line.failed,
                        slow = true,
                        "{}",
                        line.sql
                    );
                } else {
                    $crate::__private::tracing::debug!(
                        target: $target,
                        elapsed_ms = line.elapsed_ms,
                        rows = line.rows,
                        params = %line.params,
                        scope = %line.scope,
                        failed = line.failed,
                        "{}",
                        line.sql
                    );
                }
            }
            fn finding(&self, scope: &$crate::Scope, finding: &$crate::Finding) {
                $crate::__private::tracing::warn!(
                    target: $target,
                    scope = %scope,
                    kind = ?finding.kind,
                    count = finding.count,
                    call_site = finding.call_site.as_deref().unwrap_or("unknown"),
                    "{finding}"
                );
            }
        }
        TargetLog
    }};
}

/// The default target: this crate's own name.
pub const DEFAULT_TARGET: &str = "sql_observe";

/// Logs on [`DEFAULT_TARGET`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLog;

impl SqlLog for TracingLog {
    fn enabled(&self, slow: bool) -> bool {
        DEFAULT_LOG.enabled(slow)
    }
    fn statement(&self, line: &StatementLine<'_>, slow: bool) {
        DEFAULT_LOG.statement(line, slow);
    }
    fn finding(&self, scope: &Scope, finding: &Finding) {
        DEFAULT_LOG.finding(scope, finding);
    }
}

/// The macro's logger for the default target, which [`TracingLog`] names.
static DEFAULT_LOG: &dyn SqlLog = &crate::tracing_log!(DEFAULT_TARGET);
