//! Row counts per statement, taken from sqlx's own statement events.
//!
//! SeaORM's metric `Info` carries no row count, but sqlx counts the rows each statement returns
//! and affects, and reports them in an event on the target `sqlx::query` when the statement
//! ends: before the call returns to SeaORM, which then runs the metric callback. [`layer`] is a
//! tracing layer that takes those events and leaves each count with the scope the statement ran
//! in, where the callback picks it up by SQL text.
//!
//! On PostgreSQL and MySQL the event fires on the task that awaits the statement, so the layer
//! finds the scope in the task-local the callback reads too. On SQLite sqlx runs statements on
//! a worker thread of its own, where no task-local is set; it enters the caller's tracing span
//! there, so for SQLite each scope also runs in a span that carries its counts, and the layer
//! looks there when the task has no scope. The span is made only once a connection to SQLite
//! counts rows ([`crate::count_rows`]): entering a span at every poll of every future inside a
//! scope, sqlx's streams included, is most of what counting rows costs, and the other backends
//! do not need it. Without the layer installed (or with a subscriber that is not a
//! `tracing_subscriber::Registry`), counts are unknown and `rows` stays `None`.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

#[cfg(feature = "row-counts")]
use tracing::{Event, Subscriber};
use tracing::{
    Span,
    field::{Field, Visit},
};
#[cfg(feature = "row-counts")]
use tracing_subscriber::{
    Layer, Registry,
    filter::filter_fn,
    layer::Context,
    registry::{LookupSpan, SpanRef},
};

/// The target of sqlx's per-statement events.
const SQLX_TARGET: &str = "sqlx::query";
/// The target of the span each [`crate::scope`] runs in.
const SCOPE_SPAN_TARGET: &str = "sql_observe::scope";
/// Counts kept per scope while waiting for their callback. Statements that never reach the
/// callback (`BEGIN`, `COMMIT`, unprepared ones) leave theirs behind; this bounds them.
const MAX_WAITING: usize = 32;

/// Whether scopes carry their counts in a span as well as in the task: set, for the rest of
/// the process, when a connection to SQLite turns its statement events on.
static SPAN_HAND_OFF: AtomicBool = AtomicBool::new(false);

/// Called for each connection whose statement events are turned on.
pub(crate) fn events_turned_on_for(url: &str) {
    if url.starts_with("sqlite:") {
        SPAN_HAND_OFF.store(true, Ordering::Relaxed);
    }
}

#[cfg(feature = "row-counts")]
/// The tracing layer that hands sqlx's row counts to the scopes. Add it to the subscriber
/// (`tracing_subscriber::registry().with(observe::row_count_layer())`) and connect with
/// [`crate::count_rows`] applied to the connect options, or no event is ever emitted.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    RowCountLayer.with_filter(filter_fn(|metadata| {
        metadata.target() == SQLX_TARGET || metadata.target() == SCOPE_SPAN_TARGET
    }))
}

/// Statements of one scope that have finished but not yet been matched by the callback.
#[derive(Debug, Default)]
pub(crate) struct RowCounts {
    waiting: Mutex<VecDeque<(String, u64)>>,
}

impl RowCounts {
    fn push(&self, sql: String, rows: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() == MAX_WAITING {
            waiting.pop_front();
        }
        waiting.push_back((sql, rows));
    }

    /// The row count of the oldest finished statement with this exact SQL, if one is waiting.
    pub(crate) fn take(&self, sql: &str) -> Option<u64> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let position = waiting
            .iter()
            .position(|(waiting_sql, _)| waiting_sql == sql)?;
        waiting.remove(position).map(|(_, rows)| rows)
    }
}

/// A span for a scope, carrying `counts` for the layer to fill. The span is disabled (and the
/// counts stay empty) when no subscriber with the layer is installed.
#[cfg(not(feature = "row-counts"))]
pub(crate) fn scope_span(_counts: &Arc<RowCounts>) -> Span {
    tracing::trace_span!(target: SCOPE_SPAN_TARGET, "sql_scope")
}

#[cfg(feature = "row-counts")]
pub(crate) fn scope_span(counts: &Arc<RowCounts>) -> Span {
    if !SPAN_HAND_OFF.load(Ordering::Relaxed) {
        return Span::none();
    }
    let span = tracing::trace_span!(target: SCOPE_SPAN_TARGET, "sql_scope");
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch
            .downcast_ref::<Registry>()
            .and_then(|registry| registry.span(id));
        if let Some(span) = span {
            span.extensions_mut().insert(Arc::clone(counts));
        }
    });
    span
}

#[cfg(feature = "row-counts")]
struct RowCountLayer;

#[cfg(feature = "row-counts")]
impl<S> Layer<S> for RowCountLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != SQLX_TARGET {
            return;
        }
        let counts = match crate::capture::row_counts_of_this_task() {
            Some(Some(counts)) => counts,
            // Inside `unobserved`: nothing captures it.
            Some(None) => return,
            // Outside every scope, or off the task: sqlx-sqlite's worker thread, which runs in
            // the caller's span.
            None => match ctx
                .event_scope(event)
                .and_then(|mut spans| spans.find_map(|span| counts_of(&span)))
            {
                Some(counts) => counts,
                None => return,
            },
        };
        let mut fields = SqlxQueryFields::default();
        event.record(&mut fields);
        if let Some((sql, rows)) = fields.into_count() {
            counts.push(sql, rows);
        }
    }
}

#[cfg(feature = "row-counts")]
fn counts_of<S>(span: &SpanRef<'_, S>) -> Option<Arc<RowCounts>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    span.extensions().get::<Arc<RowCounts>>().cloned()
}

/// The fields of sqlx's event (see `sqlx_core::logger::QueryLogger::finish`).
#[derive(Default)]
struct SqlxQueryFields {
    summary: Option<String>,
    statement: Option<String>,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
}

impl Visit for SqlxQueryFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            // Copied once, without its framing.
            "db.statement" => self.statement = Some(unframed(value).to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// sqlx frames the whole SQL in newlines (`"\n\n{sql}\n"`).
fn unframed(statement: &str) -> &str {
    statement
        .strip_prefix("\n\n")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or(statement)
}

impl SqlxQueryFields {
    /// The statement's SQL and its row count: rows returned for a query or a `RETURNING`
    /// statement, rows affected otherwise. (SQLite reports the last write's count as "affected"
    /// even for a `SELECT`, so the two cannot simply be added.)
    fn into_count(self) -> Option<(String, u64)> {
        // sqlx sends the whole SQL only when it is longer than the summary (its first four
        // words); otherwise the summary is the SQL.
        let sql = match self.statement {
            Some(statement) if !statement.is_empty() => statement,
            _ => self.summary?,
        };
        let returned = self.rows_returned?;
        let affected = self.rows_affected.unwrap_or(0);
        let rows = if returned > 0 || yields_rows(&sql) {
            returned
        } else {
            affected
        };
        Some((sql, rows))
    }
}

/// Runs for every statement: searched without allocating an upper-cased copy.
const RETURNING: &[u8] = b" RETURNING ";

fn yields_rows(sql: &str) -> bool {
    let first_word = sql.split_whitespace().next().unwrap_or_default();
    first_word.eq_ignore_ascii_case("SELECT")
        || first_word.eq_ignore_ascii_case("WITH")
        || sql
            .as_bytes()
            .windows(RETURNING.len())
            .any(|window| window.eq_ignore_ascii_case(RETURNING))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(summary: &str, statement: &str, returned: u64, affected: u64) -> SqlxQueryFields {
        SqlxQueryFields {
            summary: Some(summary.to_owned()),
            statement: Some(unframed(statement).to_owned()),
            rows_returned: Some(returned),
            rows_affected: Some(affected),
        }
    }

    #[test]
    fn a_long_statement_is_read_back_without_its_framing_newlines() {
        let sql = "SELECT id FROM users WHERE id = $1";
        let count = fields("SELECT id FROM users …", &format!("\n\n{sql}\n"), 1, 1).into_count();
        assert_eq!(count, Some((sql.to_owned(), 1)));
    }

    #[test]
    fn a_short_statement_is_its_summary() {
        let count = fields("DELETE FROM t", "", 0, 4).into_count();
        assert_eq!(count, Some(("DELETE FROM t".to_owned(), 4)));
    }

    #[test]
    fn a_select_with_no_rows_counts_zero_whatever_the_last_write_affected() {
        let sql = "SELECT id FROM users WHERE id = ?";
        let count = fields("SELECT id FROM users …", &format!("\n\n{sql}\n"), 0, 7).into_count();
        assert_eq!(count, Some((sql.to_owned(), 0)));
    }

    #[test]
    fn an_update_counts_the_rows_it_affected() {
        let sql = "UPDATE inventory SET quantity = quantity - $1 WHERE product_id = $2";
        let count = fields(
            "UPDATE inventory SET quantity …",
            &format!("\n\n{sql}\n"),
            0,
            1,
        )
        .into_count();
        assert_eq!(count, Some((sql.to_owned(), 1)));
    }

    #[test]
    fn waiting_counts_are_matched_by_sql_and_bounded() {
        let counts = RowCounts::default();
        counts.push("BEGIN".to_owned(), 0);
        counts.push("SELECT 1".to_owned(), 1);
        assert_eq!(counts.take("SELECT 1"), Some(1));
        assert_eq!(counts.take("SELECT 1"), None);
        for n in 0..100 {
            counts.push(format!("SELECT {n}"), n);
        }
        assert_eq!(counts.take("SELECT 99"), Some(99));
        assert_eq!(counts.take("SELECT 0"), None, "the oldest were dropped");
    }
}
