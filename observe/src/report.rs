//! The N+1 detector and the per-scope report.
//!
//! The detector knows nothing of the domain; it reads the statement stream of one scope.
//! Statements of an attempt that was run again (see [`crate::attempt`]) are kept in the report,
//! marked `retried`, and never counted. The rest are grouped by **fingerprint and origin**: the
//! stack they ran on (see `callsite`), so that one statement issued once on each of two lines
//! is two groups, while a loop is one. Within a group:
//! - single statements with two or more different sets of bound values make an **N+1** (the
//!   pages of an `OFFSET` query differ only in the offset and count as one set), unless they
//!   are the pages of **one keyset walk**: an ordered, limited statement whose range-compared
//!   cursor moves one way, whose other values stay put, and whose every page but the last came
//!   back full (an integer cursor moving at least a page's width each time). Those are one
//!   logical read, listed in [`ScopeReport::paginated`];
//! - batches (an `IN` list of two keys or more, a `VALUES` list of two rows or more) are a
//!   select-in load or a chunk of a bulk write: left alone when they are chunks of one set
//!   (all the same size, the last no larger), an **N+1 of batches** when they vary, which is a
//!   select-in issued once per row of something.
//!
//! A read run again with the same values is a **duplicate**, from whatever line it came,
//! unless a write to a table it reads ran in between (then its answer may have changed).
//!
//! A finding names the statement, how often it ran, the call site (the innermost function of
//! our crates on the stack of its second run, with the function that called it) and the SeaORM
//! fix. Findings matching a [`crate::SafelistEntry`] are kept apart as suppressed, with the
//! entry's reason.

use std::{
    cmp::Ordering,
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::Duration,
};

use sea_orm::Value;
use serde::Serialize;

use crate::{
    DetectorMode, ObserveConfig, SqlLog,
    capture::{CapturedStatement, Scope, ScopeState},
    sql::Limit,
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
    /// How many different sets of bound values it ran with (for a duplicate: how many sets
    /// of values were run more than once).
    pub distinct_values: usize,
    /// The function of ours that issued it, with file and line, when it could be found.
    pub call_site: Option<String>,
    /// The function of ours that called [`Finding::call_site`]'s, with the line of the call:
    /// where the loop is when the call site issues one statement per call.
    pub called_from: Option<String>,
    /// Every function of ours on the stack, innermost first (a spawned task's, then its
    /// spawner's).
    pub stack: Vec<String>,
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
        if let Some(caller) = &self.called_from {
            write!(f, ", called from {caller}")?;
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
    /// Keyset walks over one result set, recognised as one logical read and not reported.
    pub paginated: Vec<PagedRead>,
    /// Where the findings are logged when the scope ends.
    #[serde(skip)]
    log: Arc<dyn SqlLog>,
}

impl ScopeReport {
    pub(crate) fn from_state(state: &mut ScopeState) -> Self {
        let config = state.config.clone().unwrap_or_default();
        let statements = std::mem::take(&mut state.statements);
        let detected = if config.mode == DetectorMode::Off {
            Detected::default()
        } else {
            detect(&statements, &config)
        };
        Self {
            scope: state.scope.clone(),
            mode: config.mode,
            statements,
            findings: detected.findings,
            suppressed: detected.suppressed,
            paginated: detected.paginated,
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

/// Pages of one keyset walk: statements the detector read as one logical read.
#[derive(Debug, Clone, Serialize)]
pub struct PagedRead {
    pub fingerprint: String,
    /// How many pages it took.
    pub pages: usize,
    /// Rows in all pages together.
    pub rows: u64,
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

/// How a group repeats, which decides the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repetition {
    Duplicate,
    PerRow,
    BatchPerRow,
}

/// The SeaORM way to issue `fingerprint` once instead of once per row.
fn suggested_fix(fingerprint: &str, repetition: Repetition) -> String {
    match repetition {
        Repetition::Duplicate => {
            return "run it once and reuse the result (pass the loaded model down instead of \
                    querying it again)"
                .to_owned();
        }
        Repetition::BatchPerRow => {
            return "collect the keys of every iteration first and load them in one statement \
                    (one `is_in` over all of them, or `load_many` on the whole Vec of parents) \
                    instead of one batch per row"
                .to_owned();
        }
        Repetition::PerRow => {}
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

#[derive(Debug, Default)]
struct Detected {
    findings: Vec<Finding>,
    suppressed: Vec<Finding>,
    paginated: Vec<PagedRead>,
}

/// A repetition found, before its call site is resolved.
struct Raw<'a> {
    repetition: Repetition,
    count: usize,
    distinct_values: usize,
    /// The second run: inside the loop, where the stack is worth naming.
    second: &'a CapturedStatement,
    first_sequence: usize,
}

fn distinct<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> usize {
    values.collect::<HashSet<T>>().len()
}

fn detect(statements: &[CapturedStatement], config: &ObserveConfig) -> Detected {
    let live: Vec<&CapturedStatement> = statements.iter().filter(|s| !s.retried).collect();

    let mut order: Vec<(&str, u64)> = Vec::new();
    let mut groups: HashMap<(&str, u64), Vec<&CapturedStatement>> = HashMap::new();
    for statement in &live {
        let key = (
            statement.fingerprint.as_str(),
            statement.origin.as_ref().map_or(0, |origin| origin.key),
        );
        let group = groups.entry(key).or_default();
        if group.is_empty() {
            order.push(key);
        }
        group.push(statement);
    }

    let mut raw = Vec::new();
    let mut paginated = Vec::new();
    for key in order {
        let group = &groups[&key];
        let singles: Vec<&CapturedStatement> = group
            .iter()
            .filter(|s| s.batch_size <= 1)
            .copied()
            .collect();
        let pages = distinct(singles.iter().map(|s| s.page_key));
        if singles.len() >= 2 && pages >= 2 {
            if is_keyset_walk(&singles) {
                paginated.push(PagedRead {
                    fingerprint: key.0.to_owned(),
                    pages: singles.len(),
                    rows: singles.iter().filter_map(|s| s.rows).sum(),
                });
            } else {
                raw.push(Raw {
                    repetition: Repetition::PerRow,
                    count: singles.len(),
                    distinct_values: pages,
                    second: singles[1],
                    first_sequence: singles[0].sequence,
                });
            }
        }
        let batches: Vec<&CapturedStatement> =
            group.iter().filter(|s| s.batch_size > 1).copied().collect();
        let distinct_batches = distinct(batches.iter().map(|s| s.params_key));
        if batches.len() >= 2 && distinct_batches >= 2 && !is_chunked(&batches) {
            raw.push(Raw {
                repetition: Repetition::BatchPerRow,
                count: batches.len(),
                distinct_values: distinct_batches,
                second: batches[1],
                first_sequence: batches[0].sequence,
            });
        }
    }
    raw.extend(duplicates(&live));
    raw.sort_by_key(|r| (r.first_sequence, r.repetition == Repetition::Duplicate));

    let mut detected = Detected {
        paginated,
        ..Detected::default()
    };
    for found in raw {
        let stack = found
            .second
            .origin
            .as_ref()
            .map_or_else(Vec::new, |origin| {
                origin.own_functions(&config.own_crates, env!("CARGO_CRATE_NAME"))
            });
        let call_site = stack.first().cloned();
        let fingerprint = found.second.fingerprint.as_str();
        let safelisted = config
            .safelist
            .iter()
            .find(|entry| entry.matches(fingerprint, call_site.as_deref()))
            .map(|entry| entry.reason.clone());
        let finding = Finding {
            kind: if found.repetition == Repetition::Duplicate {
                FindingKind::Duplicate
            } else {
                FindingKind::NPlusOne
            },
            fingerprint: fingerprint.to_owned(),
            count: found.count,
            distinct_values: found.distinct_values,
            call_site,
            called_from: stack.get(1).cloned(),
            stack,
            fix: suggested_fix(fingerprint, found.repetition),
            safelisted,
        };
        if finding.safelisted.is_some() {
            detected.suppressed.push(finding);
        } else {
            detected.findings.push(finding);
        }
    }
    detected
}

/// Reads run again with the same values, from any line, with no write to a table they read
/// in between. Writes are never duplicates: running one twice is two effects, not a result
/// that could have been kept.
fn duplicates<'a>(live: &[&'a CapturedStatement]) -> Vec<Raw<'a>> {
    // Runs of one read since the last write to one of its tables.
    let mut open: HashMap<(&str, u64), Vec<&'a CapturedStatement>> = HashMap::new();
    let mut repeated: HashMap<(&str, u64), (usize, &'a CapturedStatement, usize)> = HashMap::new();
    let mut close = |key: (&'a str, u64), runs: Vec<&'a CapturedStatement>| {
        if runs.len() >= 2 {
            let entry = repeated
                .entry(key)
                .or_insert((0, runs[1], runs[0].sequence));
            entry.0 += runs.len();
        }
    };
    for &statement in live {
        if let Some(table) = &statement.shape.written_table {
            let stale: Vec<(&str, u64)> = open
                .iter()
                .filter(|(_, runs)| runs[0].shape.read_tables.contains(table))
                .map(|(key, _)| *key)
                .collect();
            for key in stale {
                if let Some(runs) = open.remove(&key) {
                    close(key, runs);
                }
            }
            continue;
        }
        open.entry((statement.fingerprint.as_str(), statement.params_key))
            .or_default()
            .push(statement);
    }
    for (key, runs) in open {
        close(key, runs);
    }
    // One finding per statement: every set of values it repeated, counted together.
    let mut by_fingerprint: HashMap<&str, Raw<'a>> = HashMap::new();
    for ((fingerprint, _), (count, second, first_sequence)) in repeated {
        let raw = by_fingerprint.entry(fingerprint).or_insert(Raw {
            repetition: Repetition::Duplicate,
            count: 0,
            distinct_values: 0,
            second,
            first_sequence,
        });
        raw.count += count;
        raw.distinct_values += 1;
        if first_sequence < raw.first_sequence {
            raw.first_sequence = first_sequence;
            raw.second = second;
        }
    }
    by_fingerprint.into_values().collect()
}

/// Batches of one set cut in chunks: all the same size, the last no larger.
fn is_chunked(batches: &[&CapturedStatement]) -> bool {
    let size = batches[0].batch_size;
    let (last, rest) = batches
        .split_last()
        .map_or((size, &[][..]), |(l, r)| (l.batch_size, r));
    rest.iter().all(|b| b.batch_size == size) && last <= size
}

fn as_integer(value: &Value) -> Option<i128> {
    match value {
        Value::TinyInt(Some(v)) => Some((*v).into()),
        Value::SmallInt(Some(v)) => Some((*v).into()),
        Value::Int(Some(v)) => Some((*v).into()),
        Value::BigInt(Some(v)) => Some((*v).into()),
        Value::TinyUnsigned(Some(v)) => Some((*v).into()),
        Value::SmallUnsigned(Some(v)) => Some((*v).into()),
        Value::Unsigned(Some(v)) => Some((*v).into()),
        Value::BigUnsigned(Some(v)) => Some((*v).into()),
        _ => None,
    }
}

/// The pages of one keyset walk over one result set (see the module documentation).
fn is_keyset_walk(pages: &[&CapturedStatement]) -> bool {
    let shape = &pages[0].shape;
    if !shape.ordered || shape.range_params.is_empty() {
        return false;
    }
    let limit_of = |page: &CapturedStatement| match page.shape.limit? {
        Limit::Literal(n) => Some(i128::from(n)),
        Limit::Placeholder(index) => page.values.get(index).and_then(as_integer),
    };
    let Some(limit) = limit_of(pages[0]) else {
        return false;
    };
    // A page of one row is a row at a time: as many statements as rows, which is what an N+1 is.
    if limit < 2 || pages.iter().any(|page| limit_of(page) != Some(limit)) {
        return false;
    }
    let Some((last, full)) = pages.split_last() else {
        return false;
    };
    let came_back_full = full
        .iter()
        .all(|page| page.rows.is_some_and(|rows| i128::from(rows) == limit));
    if !came_back_full || last.rows.is_none_or(|rows| i128::from(rows) > limit) {
        return false;
    }
    // The cursor: the range-compared values, and any bound to the same column (the equality
    // half of `a < $1 OR (a = $2 AND b < $3)`). Every other value must stay put.
    let cursor_columns: HashSet<&String> = shape
        .range_params
        .iter()
        .filter_map(|&index| shape.columns.get(index))
        .flatten()
        .collect();
    let is_cursor = |index: usize| {
        shape.range_params.contains(&index)
            || shape
                .columns
                .get(index)
                .is_some_and(|columns| columns.iter().any(|c| cursor_columns.contains(c)))
    };
    let is_limit = |index: usize| shape.limit == Some(Limit::Placeholder(index));
    let fixed: Vec<usize> = (0..pages[0].params.len())
        .filter(|&index| !is_cursor(index) && !is_limit(index))
        .filter(|index| !shape.offset_params.contains(index))
        .collect();
    let stays_put = pages.windows(2).all(|pair| {
        fixed
            .iter()
            .all(|&index| pair[0].params.get(index) == pair[1].params.get(index))
    });
    if !stays_put {
        return false;
    }
    let cursor = |page: &CapturedStatement| -> Vec<(Option<i128>, String)> {
        shape
            .range_params
            .iter()
            .map(|&index| {
                (
                    page.values.get(index).and_then(as_integer),
                    page.params.get(index).cloned().unwrap_or_default(),
                )
            })
            .collect()
    };
    let cursors: Vec<_> = pages.iter().map(|page| cursor(page)).collect();
    let compare = |a: &[(Option<i128>, String)], b: &[(Option<i128>, String)]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| match (x.0, y.0) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => x.1.cmp(&y.1),
            })
            .find(|order| *order != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    let steps: Vec<Ordering> = cursors.windows(2).map(|p| compare(&p[0], &p[1])).collect();
    let one_way =
        steps.iter().all(|s| *s == Ordering::Less) || steps.iter().all(|s| *s == Ordering::Greater);
    if !one_way {
        return false;
    }
    // A unique integer key moves at least a page's width per full page (less one, for an
    // inclusive `>=`); a cursor that creeps is a lookup per row that happens to be ordered.
    let varying: Vec<usize> = (0..shape.range_params.len())
        .filter(|&position| cursors.windows(2).any(|p| p[0][position] != p[1][position]))
        .collect();
    if let [position] = varying[..]
        && cursors.iter().all(|c| c[position].0.is_some())
    {
        return cursors.windows(2).all(|pair| {
            let (Some(a), Some(b)) = (pair[0][position].0, pair[1][position].0) else {
                return false;
            };
            (b - a).abs() >= limit - 1
        });
    }
    true
}
