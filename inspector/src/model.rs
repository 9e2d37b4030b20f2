//! What the inspector keeps of a request: [`RecordedRequest`], built from a
//! [`sql_observe::ScopeReport`] and what the middleware knew of the request, and the
//! statements and findings in it ([`Trace`]). Every value is kept as the capture redacted it:
//! a value bound to a secret column is `'***'` here too, and its real value was never captured.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::Value;
use serde::Serialize;
use sql_observe::{CapturedStatement, Finding, FindingKind, ScopeReport};

/// How a redacted value is rendered by the capture; such a value is never bound as if real.
pub const REDACTED: &str = "'***'";

/// What the middleware knows of a request, besides its SQL.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub method: String,
    /// The path as requested, without the query string (where tokens and search terms
    /// travel). A path holds whatever its route puts there: ids in Mercado, but an application
    /// whose paths carry secrets (a password-reset token, say) should pass the route here.
    pub path: String,
    /// The route it matched as declared (`/orders/{id}`), when it matched one.
    pub route: Option<String>,
    pub status: u16,
    pub started_at: DateTime<Utc>,
    /// From the request reaching the middleware to its response leaving it.
    pub duration: Duration,
}

/// One request, as the list and the detail view show it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// Increasing from 1, in the order the requests ended.
    pub id: u64,
    pub method: String,
    /// The path as requested, without the query string (which is never kept).
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    /// RFC 3339, UTC.
    pub started_at: DateTime<Utc>,
    pub duration_us: u64,
    #[serde(flatten)]
    pub trace: Trace,
}

/// The list's row of a request: everything but its statements.
#[derive(Debug, Clone, Serialize)]
pub struct RequestSummary {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    pub started_at: DateTime<Utc>,
    pub duration_us: u64,
    pub statement_count: usize,
    pub database_time_us: u64,
    /// How many N+1 findings (not duplicates) the request has.
    pub n_plus_one: usize,
    pub duplicates: usize,
}

impl RecordedRequest {
    /// `report`'s statements (at most `statement_limit` of them kept) and findings, with `meta`.
    pub fn new(id: u64, meta: RequestMeta, report: &ScopeReport, statement_limit: usize) -> Self {
        Self {
            id,
            method: meta.method,
            path: meta.path,
            route: meta.route,
            status: meta.status,
            started_at: meta.started_at,
            duration_us: micros(meta.duration),
            trace: Trace::new(&report.statements, &report.findings, statement_limit),
        }
    }

    pub fn summary(&self) -> RequestSummary {
        RequestSummary {
            id: self.id,
            method: self.method.clone(),
            path: self.path.clone(),
            route: self.route.clone(),
            status: self.status,
            started_at: self.started_at,
            duration_us: self.duration_us,
            statement_count: self.trace.statement_count,
            database_time_us: self.trace.database_time_us,
            n_plus_one: self.trace.n_plus_one_count(),
            duplicates: self.trace.duplicate_count(),
        }
    }
}

/// Statements in the order they ran, and what the detector found in them.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// Every statement the scope captured, kept or not.
    pub statement_count: usize,
    /// Their database time, kept or not.
    pub database_time_us: u64,
    /// How many statements past the limit were not kept (counted above all the same).
    pub dropped_statements: usize,
    pub statements: Vec<StatementView>,
    /// N+1 patterns and duplicates, safelisted ones excluded.
    pub findings: Vec<FindingView>,
}

impl Trace {
    /// The first `statement_limit` of `statements`, and every finding that is not safelisted.
    pub fn new(statements: &[CapturedStatement], findings: &[Finding], limit: usize) -> Self {
        let mut groups: Vec<&str> = Vec::new();
        // In whole microseconds, as shown: each bar starts where the one before it ended.
        let mut offset = 0u64;
        let kept = statements
            .iter()
            .take(limit)
            .map(|statement| {
                let group = match groups.iter().position(|f| *f == statement.fingerprint) {
                    Some(index) => index + 1,
                    None => {
                        groups.push(&statement.fingerprint);
                        groups.len()
                    }
                };
                let view = StatementView::new(statement, group, offset);
                offset += micros(statement.elapsed);
                view
            })
            .collect();
        Self {
            statement_count: statements.len(),
            database_time_us: micros(statements.iter().map(|s| s.elapsed).sum()),
            dropped_statements: statements.len().saturating_sub(limit),
            statements: kept,
            findings: findings
                .iter()
                .filter(|f| f.safelisted.is_none())
                .map(FindingView::from)
                .collect(),
        }
    }

    pub fn n_plus_one_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::NPlusOne)
            .count()
    }

    pub fn duplicate_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::Duplicate)
            .count()
    }

    /// How many statements of the trace share each fingerprint group, by group number.
    pub(crate) fn group_sizes(&self) -> Vec<usize> {
        let mut sizes = Vec::new();
        for statement in &self.statements {
            if sizes.len() < statement.group {
                sizes.resize(statement.group, 0);
            }
            sizes[statement.group - 1] += 1;
        }
        sizes
    }
}

/// One statement.
#[derive(Debug, Clone, Serialize)]
pub struct StatementView {
    /// Its position in the request, from 1.
    pub sequence: usize,
    pub sql: String,
    /// The bound values as SQL literals, secret ones as `'***'`.
    pub params: Vec<String>,
    pub fingerprint: String,
    /// Statements with the same fingerprint share a group, numbered from 1 in first-run order.
    pub group: usize,
    pub duration_us: u64,
    pub rows: Option<u64>,
    pub failed: bool,
    /// Sent by an attempt that failed and was run again.
    pub retried: bool,
    /// The sum of the durations of the statements before it: where its bar starts in the
    /// waterfall. The capture records no start time per statement, so the waterfall lays the
    /// statements end to end in order; the time between them (the application's) is not shown.
    pub offset_us: u64,
    /// The values to bind for an `EXPLAIN`: a redacted one is `None`, never `'***'`.
    #[serde(skip)]
    pub(crate) values: Vec<Option<Value>>,
}

impl StatementView {
    fn new(statement: &CapturedStatement, group: usize, offset_us: u64) -> Self {
        let values = statement
            .values
            .iter()
            .zip(&statement.params)
            .map(|(value, shown)| (shown != REDACTED).then(|| value.clone()))
            .collect();
        Self {
            sequence: statement.sequence,
            sql: statement.sql.clone(),
            params: statement.params.clone(),
            fingerprint: statement.fingerprint.clone(),
            group,
            duration_us: micros(statement.elapsed),
            rows: statement.rows,
            failed: statement.failed,
            retried: statement.retried,
            offset_us,
            values,
        }
    }

    /// Whether any value was redacted (and would be bound as NULL by an `EXPLAIN`).
    pub fn has_redacted_values(&self) -> bool {
        self.values.iter().any(Option::is_none)
    }
}

/// A finding, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    pub kind: FindingKind,
    pub fingerprint: String,
    pub count: usize,
    pub distinct_values: usize,
    pub call_site: Option<String>,
    pub called_from: Option<String>,
    pub fix: String,
}

impl From<&Finding> for FindingView {
    fn from(finding: &Finding) -> Self {
        Self {
            kind: finding.kind,
            fingerprint: finding.fingerprint.clone(),
            count: finding.count,
            distinct_values: finding.distinct_values,
            call_site: finding.call_site.clone(),
            called_from: finding.called_from.clone(),
            fix: finding.fix.clone(),
        }
    }
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
