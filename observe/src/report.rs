//! The N+1 detector and the per-scope report.
//!
//! The detector knows nothing of the domain; it reads the statement stream of one scope.
//! Statements are grouped by fingerprint. Within a group, statements that carry a batch (an
//! `IN` list of two keys or more, a `VALUES` list of two rows or more) are a select-in load or a
//! chunk of a bulk insert and are left alone. Among the others:
//! - two or more different sets of bound values (ignoring `OFFSET`, so the pages of one query
//!   are one set) make an **N+1**: the same statement issued once per row of something;
//! - the same set of bound values run twice or more is a **duplicate**: a result that could have
//!   been kept instead of asked for again.
//!
//! A finding names the statement, how often it ran, the call site (the innermost function of
//! our crates on the stack of its second run) and the SeaORM fix. Findings matching a
//! [`crate::SafelistEntry`] are kept apart as suppressed, with the entry's reason.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use serde::Serialize;

use crate::{
    DetectorMode, ObserveConfig, SqlLog,
    callsite::innermost_own_frame,
    capture::{CapturedStatement, Scope, ScopeState},
};

/// What kind of repetition a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// One statement per row: the same fingerprint with different values.
    NPlusOne,
    /// The same statement with the same values, run again.
    Duplicate,
}

/// A repeated statement the detector reports.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The repeated statement, placeholders normalised.
    pub fingerprint: String,
    /// How often it ran in the scope (batches excluded).
    pub count: usize,
    /// How many different sets of bound values it ran with.
    pub distinct_values: usize,
    /// The function of ours that issued it, with file and line, when it could be found.
    pub call_site: Option<String>,
    /// How to issue it once instead, in SeaORM terms.
    pub fix: String,
    /// Set when a safelist entry covers the finding: why it is intentional.
    pub safelisted: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FindingKind::NPlusOne => "N+1",
            FindingKind::Duplicate => "duplicate query",
        };
        write!(f, "{what}: {}x {}", self.count, self.fingerprint)?;
        if let Some(site) = &self.call_site {
            write!(f, " at {site}")?;
        }
        write!(f, ". Fix: {}", self.fix)
    }
}

/// Everything one scope sent to the database, and what the detector made of it.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeReport {
    pub scope: Scope,
    pub mode: DetectorMode,
    pub statements: Vec<CapturedStatement>,
    /// N+1 patterns and duplicates, safelisted ones excluded.
    pub findings: Vec<Finding>,
    /// Findings a safelist entry covers, each with its reason.
    pub suppressed: Vec<Finding>,
    /// Where the findings are logged when the scope ends.
    #[serde(skip)]
    log: Arc<dyn SqlLog>,
}

impl ScopeReport {
    pub(crate) fn from_state(state: &mut ScopeState) -> Self {
        let config = state.config.clone().unwrap_or_default();
        let statements = std::mem::take(&mut state.statements);
        let (findings, suppressed) = if config.mode == DetectorMode::Off {
            (Vec::new(), Vec::new())
        } else {
            detect(&statements, &state.repeats, &config)
        };
        Self {
            scope: state.scope.clone(),
            mode: config.mode,
            statements,
            findings,
            suppressed,
            log: Arc::clone(&config.log),
        }
    }

    /// The number of statements captured: the `x-query-count` header.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// The time spent executing them (pool waits excluded).
    pub fn total_database_time(&self) -> Duration {
        self.statements.iter().map(|s| s.elapsed).sum()
    }

    /// Rows returned or affected by all of them, or `None` if any count is unknown.
    pub fn total_rows(&self) -> Option<u64> {
        self.statements.iter().map(|s| s.rows).sum()
    }

    pub fn n_plus_one(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::NPlusOne)
    }

    pub fn duplicates(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::Duplicate)
    }

    /// How many times each fingerprint ran (batches included), in first-run order.
    pub fn fingerprint_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for statement in &self.statements {
            match counts.iter_mut().find(|(f, _)| *f == statement.fingerprint) {
                Some((_, count)) => *count += 1,
                None => counts.push((statement.fingerprint.clone(), 1)),
            }
        }
        counts
    }

    /// One line for the `x-n-plus-one` header, or `None` when there is no N+1: the worst
    /// finding, its count and call site, and how many more there are. ASCII only, no newlines.
    pub fn summary(&self) -> Option<String> {
        let mut n_plus_one: Vec<&Finding> = self.n_plus_one().collect();
        n_plus_one.sort_by_key(|f| std::cmp::Reverse(f.count));
        let worst = n_plus_one.first()?;
        let mut line = format!("{}x {}", worst.count, shorten(&worst.fingerprint, 160));
        if let Some(site) = &worst.call_site {
            line.push_str(" at ");
            line.push_str(site);
        }
        if n_plus_one.len() > 1 {
            line.push_str(&format!(" (+{} more)", n_plus_one.len() - 1));
        }
        Some(
            line.chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect(),
        )
    }

    /// The `server-timing` header value: `db;dur=<ms>;desc="<n> statements"`.
    pub fn server_timing(&self) -> String {
        format!(
            "db;dur={:.3};desc=\"{} statements\"",
            self.total_database_time().as_secs_f64() * 1000.0,
            self.statement_count()
        )
    }

    /// Fails with the findings, if there are any: what `Raise` mode does at the end of a scope.
    pub fn raise(&self) -> Result<(), DetectorError> {
        if self.findings.is_empty() {
            Ok(())
        } else {
            Err(DetectorError {
                scope: self.scope.clone(),
                findings: self.findings.clone(),
            })
        }
    }

    /// Acts on the findings per the mode: a WARN line each, and in `Raise` mode a panic.
    pub(crate) fn act(&self) {
        if self.mode == DetectorMode::Off {
            return;
        }
        for finding in &self.findings {
            self.log.finding(&self.scope, finding);
        }
        if self.mode == DetectorMode::Raise
            && let Err(error) = self.raise()
        {
            panic!("{error}");
        }
    }
}

/// The findings of a scope, as an error: what `Raise` mode panics with.
#[derive(Debug, Clone, thiserror::Error)]
pub struct DetectorError {
    pub scope: Scope,
    pub findings: Vec<Finding>,
}

impl fmt::Display for DetectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} repeated statement(s) in {}:",
            self.findings.len(),
            self.scope
        )?;
        for finding in &self.findings {
            writeln!(f, "  - {finding}")?;
        }
        Ok(())
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max_chars).collect();
    short.push_str("...");
    short
}

/// The SeaORM way to issue `fingerprint` once instead of once per row.
fn suggested_fix(fingerprint: &str, kind: FindingKind) -> String {
    if kind == FindingKind::Duplicate {
        return "run it once and reuse the result (pass the loaded model down instead of \
                querying it again)"
            .to_owned();
    }
    let upper = fingerprint.to_ascii_uppercase();
    if upper.starts_with("SELECT") && upper.contains("COUNT(") {
        "one query with GROUP BY over all the keys (select the key and COUNT(*), \
         `.group_by(..)`), instead of a COUNT per row"
            .to_owned()
    } else if upper.starts_with("SELECT") {
        "load the relation for all rows at once: `LoaderTrait::load_many` / `load_one` on the \
         Vec of parents, the entity loader's `Entity::load().with(..)`, or one JOIN with \
         `find_with_related` / `find_also_related`"
            .to_owned()
    } else if upper.starts_with("INSERT") {
        "insert all rows in one statement with `Entity::insert_many` (chunked under the \
         65535-parameter limit)"
            .to_owned()
    } else {
        "one `update_many()` / `delete_many()` filtered with `Column.is_in(..)`; if each \
         row's statement must be atomic on its own, safelist it with the reason"
            .to_owned()
    }
}

fn detect(
    statements: &[CapturedStatement],
    repeats: &HashMap<String, (usize, Option<std::sync::Arc<std::backtrace::Backtrace>>)>,
    config: &ObserveConfig,
) -> (Vec<Finding>, Vec<Finding>) {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<&CapturedStatement>> = HashMap::new();
    for statement in statements {
        let group = groups.entry(statement.fingerprint.as_str()).or_default();
        if group.is_empty() {
            order.push(statement.fingerprint.as_str());
        }
        group.push(statement);
    }

    let mut findings = Vec::new();
    let mut suppressed = Vec::new();
    for fingerprint in order {
        let singles: Vec<&&CapturedStatement> = groups[fingerprint]
            .iter()
            .filter(|s| s.batch_size <= 1)
            .collect();
        if singles.len() < 2 {
            continue;
        }
        let mut by_page_key: HashMap<u64, usize> = HashMap::new();
        let mut by_params: HashMap<u64, usize> = HashMap::new();
        for statement in &singles {
            *by_page_key.entry(statement.page_key).or_default() += 1;
            *by_params.entry(statement.params_key).or_default() += 1;
        }
        let call_site = repeats
            .get(fingerprint)
            .and_then(|(_, backtrace)| backtrace.as_deref())
            .and_then(|bt| innermost_own_frame(bt, &config.own_crates, env!("CARGO_CRATE_NAME")));
        let mut found = Vec::new();
        if by_page_key.len() >= 2 {
            found.push((FindingKind::NPlusOne, singles.len(), by_page_key.len()));
        }
        let repeated: usize = by_params.values().filter(|&&n| n >= 2).sum();
        if repeated >= 2 {
            found.push((FindingKind::Duplicate, repeated, 1));
        }
        for (kind, count, distinct_values) in found {
            let safelisted = config
                .safelist
                .iter()
                .find(|entry| entry.matches(fingerprint, call_site.as_deref()))
                .map(|entry| entry.reason.clone());
            let finding = Finding {
                kind,
                fingerprint: fingerprint.to_owned(),
                count,
                distinct_values,
                call_site: call_site.clone(),
                fix: suggested_fix(fingerprint, kind),
                safelisted,
            };
            if finding.safelisted.is_some() {
                suppressed.push(finding);
            } else {
                findings.push(finding);
            }
        }
    }
    (findings, suppressed)
}
