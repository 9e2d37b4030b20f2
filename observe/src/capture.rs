//! The metric callback and the scopes it captures into.
//!
//! A scope is a `tokio::task_local!`: the callback runs on the task that awaits the query, so it
//! finds the scope of exactly that request, test or command. Never a thread-local (a task moves
//! between worker threads at every `.await`) and never a global (concurrent requests would mix).
//! Scopes nest: a statement is captured by the innermost scope and every scope around it.

use std::{
    backtrace::Backtrace,
    collections::HashMap,
    fmt,
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use sea_orm::{Value, metric::Info};
use serde::Serialize;

use tracing::Instrument;

use crate::{ObserveConfig, StatementLine, report::ScopeReport, rows::RowCounts, sql};

tokio::task_local! {
    static CURRENT: Option<Arc<Mutex<ScopeState>>>;
}

/// What a scope stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Request,
    Test,
    Command,
}

/// A unit of work whose statements are counted together: one HTTP request, one test, one CLI
/// command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub kind: ScopeKind,
    /// What it was, e.g. `GET /me/orders`.
    pub name: String,
}

impl Scope {
    pub fn request(name: impl Into<String>) -> Self {
        Self {
            kind: ScopeKind::Request,
            name: name.into(),
        }
    }

    pub fn test(name: impl Into<String>) -> Self {
        Self {
            kind: ScopeKind::Test,
            name: name.into(),
        }
    }

    pub fn command(name: impl Into<String>) -> Self {
        Self {
            kind: ScopeKind::Command,
            name: name.into(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.name)
    }
}

/// One statement as the application sent it.
#[derive(Debug, Clone, Serialize)]
pub struct CapturedStatement {
    /// The SQL with its placeholders (`$1` on PostgreSQL, `?` on SQLite and MySQL).
    pub sql: String,
    /// The bound values, as SQL literals; values bound to secret columns are `'***'`.
    pub params: Vec<String>,
    /// The SQL with placeholders normalised and `IN (…)` and multi-row `VALUES` collapsed.
    pub fingerprint: String,
    /// Rows in its `VALUES` list or keys in its `IN` list; above 1 it is a batch.
    pub batch_size: usize,
    /// Execution time, excluding the wait for a pooled connection.
    #[serde(rename = "elapsed_us", serialize_with = "as_micros")]
    pub elapsed: Duration,
    pub failed: bool,
    /// Rows it returned (a query, or a statement with `RETURNING`) or affected (a write); `None`
    /// when unknown: outside a scope, or without [`crate::row_count_layer`] installed.
    pub rows: Option<u64>,
    /// The statement's position in its scope, from 1.
    pub sequence: usize,
    /// Equal when all bound values are equal (secrets included, though never shown).
    #[serde(skip)]
    pub(crate) params_key: u64,
    /// As `params_key`, ignoring `OFFSET` values: pages of one query share it.
    #[serde(skip)]
    pub(crate) page_key: u64,
    /// The bound values, secret ones replaced by `'***'`: to run the statement again (for an
    /// `EXPLAIN`, say) without holding a secret.
    #[serde(skip)]
    pub values: Vec<Value>,
}

fn as_micros<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

impl fmt::Display for CapturedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sql)?;
        if !self.params.is_empty() {
            write!(f, "  -- [{}]", self.params.join(", "))?;
        }
        match self.rows {
            Some(1) => write!(f, "  -- 1 row"),
            Some(rows) => write!(f, "  -- {rows} rows"),
            None => Ok(()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ScopeState {
    pub(crate) scope: Scope,
    pub(crate) config: Option<Arc<ObserveConfig>>,
    pub(crate) statements: Vec<CapturedStatement>,
    /// For each fingerprint: how often it ran, and the stack of its second run.
    pub(crate) repeats: HashMap<String, (usize, Option<Arc<Backtrace>>)>,
    /// Row counts of finished statements, left by the row-count layer for the callback.
    row_counts: Arc<RowCounts>,
    parent: Option<Arc<Mutex<ScopeState>>>,
}

fn lock(state: &Mutex<ScopeState>) -> MutexGuard<'_, ScopeState> {
    // A panic while holding the lock leaves plain data behind, still worth reporting.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `future` as `scope`: every statement it runs through an observed connection is captured.
/// Returns its output and the scope's report, which the detector has already acted on per
/// [`crate::DetectorMode`] (a WARN per finding; in `Raise` mode, a panic).
pub async fn scope<F: Future>(scope: Scope, future: F) -> (F::Output, ScopeReport) {
    let parent = CURRENT.try_with(Clone::clone).ok().flatten();
    let row_counts = Arc::new(RowCounts::default());
    let span = crate::rows::scope_span(&row_counts);
    let state = Arc::new(Mutex::new(ScopeState {
        scope,
        config: None,
        statements: Vec::new(),
        repeats: HashMap::new(),
        row_counts,
        parent,
    }));
    let output = CURRENT
        .scope(Some(Arc::clone(&state)), future.instrument(span))
        .await;
    let report = ScopeReport::from_state(&mut lock(&state));
    report.act();
    (output, report)
}

/// Runs `future` with capture suspended: for a test's arrangement inside a measured scope.
pub async fn unobserved<F: Future>(future: F) -> F::Output {
    CURRENT.scope(None, future).await
}

/// The metric callback: logs the statement and captures it into the current scope.
pub(crate) fn record(config: &Arc<ObserveConfig>, info: &Info<'_>) {
    let scope = CURRENT.try_with(Clone::clone).ok().flatten();
    let slow = info.elapsed >= config.slow_threshold;
    let logged = config.log.enabled(slow);
    if scope.is_none() && !logged {
        return;
    }
    let statement = info.statement;
    let rows = scope
        .as_ref()
        .and_then(|innermost| lock(innermost).row_counts.take(&statement.sql));
    let backend = statement.db_backend;
    let shape = sql::shape(&statement.sql, backend);
    let values = statement
        .values
        .as_ref()
        .map_or(&[][..], |v| v.0.as_slice());
    let mentions_secret = config
        .secret_columns
        .iter()
        .any(|secret| statement.sql.contains(secret.as_str()));
    let mut params = Vec::with_capacity(values.len());
    let mut kept_values = Vec::with_capacity(values.len());
    let mut params_hasher = DefaultHasher::new();
    let mut page_hasher = DefaultHasher::new();
    for (index, value) in values.iter().enumerate() {
        let rendered = sql::render_value(value, backend);
        rendered.hash(&mut params_hasher);
        if !shape.offset_params.contains(&index) {
            rendered.hash(&mut page_hasher);
        }
        let columns = shape.columns.get(index);
        let secret = match columns {
            Some(columns) if !columns.is_empty() => columns.iter().any(|c| config.is_secret(c)),
            // Bound to a column we could not name, in a statement that touches a secret one:
            // assume the worst.
            _ => mentions_secret,
        };
        if secret {
            params.push("'***'".to_owned());
            kept_values.push(Value::from("***"));
        } else {
            params.push(rendered);
            kept_values.push(value.clone());
        }
    }

    if logged {
        let elapsed_ms = (info.elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let params_text = format!("[{}]", params.join(", "));
        let scope_name = scope
            .as_ref()
            .map(|s| lock(s).scope.name.clone())
            .unwrap_or_else(|| "-".to_owned());
        let line = StatementLine {
            sql: &statement.sql,
            params: &params_text,
            elapsed_ms,
            rows,
            scope: &scope_name,
            failed: info.failed,
        };
        config.log.statement(&line, slow);
    }

    let Some(innermost) = scope else {
        return;
    };
    let captured = CapturedStatement {
        sql: statement.sql.clone(),
        params,
        fingerprint: shape.fingerprint,
        batch_size: shape.batch_size,
        elapsed: info.elapsed,
        failed: info.failed,
        rows,
        sequence: 0,
        params_key: params_hasher.finish(),
        page_key: page_hasher.finish(),
        values: kept_values,
    };
    let mut backtrace: Option<Arc<Backtrace>> = None;
    let mut current = Some(innermost);
    while let Some(state) = current {
        let mut guard = lock(&state);
        if guard.config.is_none() {
            guard.config = Some(Arc::clone(config));
        }
        let repeat = guard
            .repeats
            .entry(captured.fingerprint.clone())
            .or_insert((0, None));
        repeat.0 += 1;
        // The second run of a fingerprint is the first sign of a loop: remember where it was.
        if repeat.0 == 2 && config.mode != crate::DetectorMode::Off {
            let captured_here =
                backtrace.get_or_insert_with(|| Arc::new(Backtrace::force_capture()));
            repeat.1 = Some(Arc::clone(captured_here));
        }
        let mut entry = captured.clone();
        entry.sequence = guard.statements.len() + 1;
        guard.statements.push(entry);
        current = guard.parent.clone();
    }
}
