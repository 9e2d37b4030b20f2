//! The metric callback and the scopes it captures into.
//!
//! A scope is a `tokio::task_local!`: the callback runs on the task that awaits the query, so it
//! finds the scope of exactly that request, test or command. Never a thread-local (a task moves
//! between worker threads at every `.await`) and never a global (concurrent requests would mix).
//! Scopes nest: a statement is captured by the innermost scope and every scope around it.
//!
//! Two more task-locals ride along: the [`attempt`] a statement belongs to, so that a retried
//! unit of work never looks like a repeated one, and, in a task spawned through [`spawn`] or
//! [`in_current_scope`], the origin of the code that spawned it, so that its statements are
//! grouped by the whole logical stack and not only by the task's own frames.

use std::{
    fmt,
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::{Value, metric::Info};
use serde::Serialize;

use tracing::Instrument;

use crate::{
    DetectorMode, ObserveConfig, StatementLine,
    callsite::{Boundary, Origin},
    report::ScopeReport,
    rows::RowCounts,
    sql::{self, SqlShape},
};

tokio::task_local! {
    static CURRENT: Option<Arc<Mutex<ScopeState>>>;
    static ATTEMPT: Option<Arc<AttemptNode>>;
    static SPAWNED_FROM: Option<Origin>;
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
    /// Sent by an [`attempt`] that failed and was run again: kept in the report, never
    /// counted by the detector.
    pub retried: bool,
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
    /// What the tokenizer learned about it: cursor, limit, order, the tables it reads and writes.
    #[serde(skip)]
    pub(crate) shape: Arc<SqlShape>,
    /// Where it was issued from; `None` when the detector is off.
    #[serde(skip)]
    pub(crate) origin: Option<Origin>,
    #[serde(skip)]
    pub(crate) attempt: Option<Arc<AttemptNode>>,
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
    /// Set when the scope has ended and its report is taken: later statements (of a task it
    /// spawned that outlived it) are not captured.
    ended: bool,
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
        ended: false,
        row_counts,
        parent,
    }));
    let output = CURRENT
        .scope(Some(Arc::clone(&state)), bounded(future).instrument(span))
        .await;
    let report = {
        let mut state = lock(&state);
        state.ended = true;
        ScopeReport::from_state(&mut state)
    };
    report.act();
    (output, report)
}

/// Polls `future` with its poll frame marked as the end of the call-site walks made inside it.
async fn bounded<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        let marker = 0u8;
        let _boundary = Boundary::enter(&marker);
        future.as_mut().poll(cx)
    })
    .await
}

/// Carries the current scope into `future`, for a task that will run it elsewhere: its
/// statements are captured by the scope (and the scopes around it) as if it ran inline, with
/// row counts, inside the current [`attempt`], and grouped by where it was spawned from as well
/// as by its own frames. Outside a scope it returns the future unchanged in effect. For a
/// `JoinSet`: `tasks.spawn(sql_observe::in_current_scope(load(db.clone(), id)))`.
pub fn in_current_scope<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let scope = CURRENT.try_with(Clone::clone).ok().flatten();
    let attempt = ATTEMPT.try_with(Clone::clone).ok().flatten();
    let outer = SPAWNED_FROM.try_with(Clone::clone).ok().flatten();
    // One walk per spawn, made here on the spawner's stack, where its call site still is.
    let spawned_from = scope.as_ref().map(|_| Origin::here(outer.as_ref()));
    let carried = async move {
        let future = SPAWNED_FROM.scope(spawned_from, bounded(future));
        CURRENT.scope(scope, ATTEMPT.scope(attempt, future)).await
    };
    carried.instrument(tracing::Span::current())
}

/// `tokio::spawn` of [`in_current_scope`]`(future)`: one word to keep spawned work visible.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(in_current_scope(future))
}

/// One run of a unit of work that may be run again, returned by [`attempt`].
#[derive(Debug)]
pub struct Attempt {
    id: u64,
    scope: Option<Arc<Mutex<ScopeState>>>,
}

#[derive(Debug)]
pub(crate) struct AttemptNode {
    id: u64,
    parent: Option<Arc<AttemptNode>>,
}

impl AttemptNode {
    fn is_within(&self, id: u64) -> bool {
        self.id == id || self.parent.as_ref().is_some_and(|p| p.is_within(id))
    }
}

static NEXT_ATTEMPT: AtomicU64 = AtomicU64::new(1);

/// Runs `future` as one attempt of a unit of work that a retry loop may run again. If the loop
/// does, it calls [`Attempt::mark_retried`]: the attempt's statements stay in the report,
/// marked `retried`, and never make a duplicate or an N+1 with those of the next attempt.
pub async fn attempt<F: Future>(future: F) -> (F::Output, Attempt) {
    let node = Arc::new(AttemptNode {
        id: NEXT_ATTEMPT.fetch_add(1, Ordering::Relaxed),
        parent: ATTEMPT.try_with(Clone::clone).ok().flatten(),
    });
    let attempt = Attempt {
        id: node.id,
        scope: CURRENT.try_with(Clone::clone).ok().flatten(),
    };
    let output = ATTEMPT.scope(Some(node), future).await;
    (output, attempt)
}

impl Attempt {
    /// Marks the statements this attempt sent (nested attempts' included) as retried, in its
    /// scope and every scope around it.
    pub fn mark_retried(&self) {
        let mut current = self.scope.clone();
        while let Some(state) = current {
            let mut guard = lock(&state);
            for statement in &mut guard.statements {
                if statement
                    .attempt
                    .as_ref()
                    .is_some_and(|node| node.is_within(self.id))
                {
                    statement.retried = true;
                }
            }
            current = guard.parent.clone();
        }
    }
}

/// Where the row-count layer leaves a statement's count: the innermost scope of the task the
/// statement's event fires on. `None` on a task outside every scope, or on no task at all
/// (sqlx-sqlite's worker thread); `Some(None)` inside [`unobserved`].
#[cfg(feature = "row-counts")]
pub(crate) fn row_counts_of_this_task() -> Option<Option<Arc<RowCounts>>> {
    CURRENT
        .try_with(|scope| {
            scope
                .as_ref()
                .map(|state| Arc::clone(&lock(state).row_counts))
        })
        .ok()
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
    let shape = sql::cached_shape(&statement.sql, backend);
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
    if lock(&innermost).ended {
        return;
    }
    let origin = (config.mode != DetectorMode::Off).then(|| {
        let spawned_from = SPAWNED_FROM.try_with(Clone::clone).ok().flatten();
        Origin::here(spawned_from.as_ref())
    });
    let captured = CapturedStatement {
        sql: statement.sql.clone(),
        params,
        fingerprint: shape.fingerprint.clone(),
        batch_size: shape.batch_size,
        elapsed: info.elapsed,
        failed: info.failed,
        rows,
        sequence: 0,
        retried: false,
        params_key: params_hasher.finish(),
        page_key: page_hasher.finish(),
        values: kept_values,
        shape,
        origin,
        attempt: ATTEMPT.try_with(Clone::clone).ok().flatten(),
    };
    // Every enclosing scope gets its copy; the outermost takes the statement itself, so a
    // request's scope alone (the usual case) clones nothing.
    let mut captured = Some(captured);
    let mut current = Some(innermost);
    while let Some(state) = current {
        let mut guard = lock(&state);
        if guard.config.is_none() {
            guard.config = Some(Arc::clone(config));
        }
        let parent = guard.parent.clone();
        let mut entry = match (&parent, captured.take()) {
            (Some(_), Some(statement)) => {
                let copy = statement.clone();
                captured = Some(statement);
                copy
            }
            (None, Some(statement)) => statement,
            (_, None) => return,
        };
        entry.sequence = guard.statements.len() + 1;
        guard.statements.push(entry);
        drop(guard);
        current = parent;
    }
}
