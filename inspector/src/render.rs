//! The HTML, server-rendered with maud: the list page, a request's page, and the pieces the
//! static reports ([`crate::report`]) share with them. Every text that came from a request
//! (path, SQL, values) is escaped by maud; the stylesheet and the script are embedded.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    FindingView, RecordedRequest, StatementView, Trace, explain::is_single_select, model::REDACTED,
};
use sql_observe::FindingKind;

const STYLE: &str = include_str!("../assets/inspector.css");
const SCRIPT: &str = include_str!("../assets/inspector.js");

/// A whole page: `title`, the embedded stylesheet, `body`, and the script when `live` (the
/// server's pages; a static report has none).
pub fn page(title: &str, body: Markup, live: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // No favicon request: it would be recorded as a request of the application.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                (body)
                @if live {
                    script { (PreEscaped(SCRIPT)) }
                }
            }
        }
    }
}

/// Milliseconds with three decimals, from microseconds.
pub fn ms(micros: u64) -> String {
    format!("{:.3} ms", micros as f64 / 1000.0)
}

/// The list of recorded requests, newest first; new ones are added by the script as they come.
pub fn list_page(requests: &[std::sync::Arc<RecordedRequest>]) -> Markup {
    let body = html! {
        header {
            h1 { "SQL inspector" }
            p.note {
                "The most recent requests, newest first, with the SQL each sent. "
                "Development only: it shows every statement and its values (secret columns as "
                code { (REDACTED) } ")."
            }
        }
        table.requests {
            thead {
                tr {
                    th { "#" } th { "time (UTC)" } th { "method" } th { "path" } th { "status" }
                    th.num { "statements" } th.num { "database" } th.num { "total" } th { "findings" }
                }
            }
            tbody #requests {
                @for request in requests {
                    (list_row(request))
                }
            }
        }
        @if requests.is_empty() {
            p #empty.note { "No request yet: send one to the application and it appears here." }
        }
    };
    page("SQL inspector", body, true)
}

fn list_row(request: &RecordedRequest) -> Markup {
    let summary = request.summary();
    let href = format!("{}/r/{}", crate::PREFIX, request.id);
    html! {
        tr.request data-id=(request.id) data-n-plus-one=(summary.n_plus_one > 0) {
            td.num { (request.id) }
            td { (request.started_at.format("%H:%M:%S%.3f")) }
            td.method { (request.method) }
            td.path { a href=(href) { (request.path) } }
            td.status.(status_class(request.status)) { (request.status) }
            td.num { (summary.statement_count) }
            td.num { (ms(summary.database_time_us)) }
            td.num { (ms(summary.duration_us)) }
            td {
                @if summary.n_plus_one > 0 {
                    span.badge.n-plus-one title="An N+1: one statement per row" { "N+1" }
                    " "
                }
                @if summary.duplicates > 0 {
                    span.badge.duplicate title="The same statement with the same values, run again" { "duplicate" }
                }
            }
        }
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        500.. => "s5",
        400..500 => "s4",
        _ => "s2",
    }
}

/// One request's page: what it was, then its trace; `explains` offers `EXPLAIN` for a SELECT.
pub fn detail_page(request: &RecordedRequest, explains: bool) -> Markup {
    let title = format!("{} {}", request.method, request.path);
    let body = html! {
        header {
            p { a href=(crate::PREFIX) { "← all requests" } }
            h1 { span.method { (request.method) } " " (request.path) " " span.status.(status_class(request.status)) { (request.status) } }
            dl.facts {
                dt { "route" } dd { code { (request.route.as_deref().unwrap_or("(no route)")) } }
                dt { "started" } dd { (request.started_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) }
                dt { "total" } dd { (ms(request.duration_us)) }
            }
        }
        (trace(&request.trace, explains.then_some(request.id)))
    };
    page(&title, body, true)
}

/// A trace: its counts, findings, waterfall and statements. With `explain_for` (the request's
/// id), each single SELECT gets an `EXPLAIN` button.
pub fn trace(trace: &Trace, explain_for: Option<u64>) -> Markup {
    html! {
        dl.facts {
            dt { "statements" } dd.statement-count { (trace.statement_count) }
            dt { "database" } dd { (ms(trace.database_time_us)) }
        }
        @if trace.dropped_statements > 0 {
            p.warning { (trace.dropped_statements) " more statements ran and were counted, not kept." }
        }
        @if !trace.findings.is_empty() {
            section.findings {
                h2 { "Findings" }
                @for finding in &trace.findings {
                    (finding_block(finding))
                }
            }
        }
        @if !trace.statements.is_empty() {
            section {
                h2 { "Timeline" }
                (waterfall(trace))
            }
            section.statements {
                h2 { "Statements" }
                @let sizes = trace.group_sizes();
                @for statement in &trace.statements {
                    (statement_block(statement, sizes.get(statement.group - 1).copied().unwrap_or(1), explain_for))
                }
            }
        }
    }
}

fn finding_block(finding: &FindingView) -> Markup {
    let (class, label) = match finding.kind {
        FindingKind::NPlusOne => ("n-plus-one", "N+1"),
        FindingKind::Duplicate => ("duplicate", "duplicate"),
    };
    html! {
        div.finding {
            p {
                span.badge.(class) { (label) } " "
                strong { (finding.count) "×" } " with " (finding.distinct_values) " different sets of values"
            }
            pre.sql { (highlight(&finding.fingerprint)) }
            dl.facts {
                dt { "call site" } dd.call-site { code { (finding.call_site.as_deref().unwrap_or("unknown")) } }
                @if let Some(caller) = &finding.called_from {
                    dt { "called from" } dd.called-from { code { (caller) } }
                }
                dt { "fix" } dd.fix { (finding.fix) }
            }
        }
    }
}

/// Bars laid end to end in statement order, each as wide as its duration.
fn waterfall(trace: &Trace) -> Markup {
    let total = trace
        .statements
        .iter()
        .map(|s| s.offset_us + s.duration_us)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    html! {
        div.waterfall {
            @for statement in &trace.statements {
                @let left = statement.offset_us as f64 / total * 100.0;
                @let width = (statement.duration_us as f64 / total * 100.0).max(0.4);
                a.bar-row href=(format!("#s{}", statement.sequence)) title=(statement.fingerprint) {
                    span.bar-label { "#" (statement.sequence) }
                    span.bar-track {
                        span.bar.(format!("g{}", (statement.group - 1) % 8)) style=(format!("left:{left:.2}%;width:{width:.2}%")) {}
                    }
                    span.bar-time { (ms(statement.duration_us)) }
                }
            }
        }
        p.note {
            "Statements in the order they ran, each bar as long as its database time. The capture "
            "records no start time per statement, so bars are laid end to end: the application's "
            "time between statements is not shown."
        }
    }
}

fn statement_block(
    statement: &StatementView,
    group_size: usize,
    explain_for: Option<u64>,
) -> Markup {
    let explainable = explain_for.is_some() && is_single_select(&statement.sql);
    html! {
        div.statement id=(format!("s{}", statement.sequence)) {
            p.statement-head {
                strong { "#" (statement.sequence) }
                " · " span.(format!("group g{}", (statement.group - 1) % 8)) title=(statement.fingerprint) {
                    "group " (statement.group) @if group_size > 1 { " (" (group_size) "× in this request)" }
                }
                " · " (ms(statement.duration_us))
                @if let Some(rows) = statement.rows { " · " (rows) @if rows == 1 { " row" } @else { " rows" } }
                @if statement.failed { " · " span.badge.failed { "failed" } }
                @if statement.retried { " · " span.badge.retried { "retried" } }
            }
            pre.sql { (highlight(&format_sql(&statement.sql))) }
            @if !statement.params.is_empty() {
                ol.values {
                    @for value in &statement.params {
                        li { code.(if value == REDACTED { "redacted" } else { "value" }) { (value) } }
                    }
                }
            }
            @if let (true, Some(request)) = (explainable, explain_for) {
                div.explain {
                    button.explain-button type="button"
                        data-url=(format!("{}/requests/{request}/statements/{}/explain", crate::PREFIX, statement.sequence)) {
                        "EXPLAIN"
                    }
                    @if statement.has_redacted_values() {
                        span.note { " A redacted value is bound as NULL: the plan is for NULL there, not the real value." }
                    }
                    pre.plan hidden {}
                }
            }
        }
    }
}

/// `sql` laid out on lines by sqlformat; the text is unchanged but for whitespace.
pub fn format_sql(sql: &str) -> String {
    let options = sqlformat::FormatOptions::default();
    sqlformat::format(sql, &sqlformat::QueryParams::None, &options)
}

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "AS",
    "ON",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "FULL",
    "CROSS",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "RETURNING",
    "ASC",
    "DESC",
    "DISTINCT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "LIKE",
    "ESCAPE",
    "BETWEEN",
    "EXISTS",
    "UNION",
    "ALL",
    "WITH",
    "FOR",
    "COUNT",
    "CAST",
    "TRUE",
    "FALSE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "LOWER",
    "UPPER",
    "COALESCE",
    "DEFAULT",
    "CONFLICT",
    "DO",
    "NOTHING",
    "SHARE",
];

/// `sql` with keywords, strings, quoted identifiers, placeholders and numbers in spans.
pub fn highlight(sql: &str) -> Markup {
    html! {
        @for (class, text) in tokens(sql) {
            @match class {
                Some(class) => span.(class) { (text) },
                None => (text),
            }
        }
    }
}

fn tokens(sql: &str) -> Vec<(Option<&'static str>, &str)> {
    let bytes = sql.as_bytes();
    let mut out: Vec<(Option<&'static str>, &str)> = Vec::new();
    let mut plain_start = 0;
    let mut i = 0;
    let push = |out: &mut Vec<_>, plain_start: &mut usize, start: usize, end: usize, class| {
        if *plain_start < start {
            out.push((None, &sql[*plain_start..start]));
        }
        out.push((Some(class), &sql[start..end]));
        *plain_start = end;
    };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == c {
                        // A doubled quote is an escaped one.
                        if bytes.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                let class = if c == b'\'' { "str" } else { "ident" };
                push(&mut out, &mut plain_start, start, i, class);
            }
            b'$' | b'?' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                push(&mut out, &mut plain_start, start, i, "param");
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                push(&mut out, &mut plain_start, start, i, "number");
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                    push(&mut out, &mut plain_start, start, i, "kw");
                }
            }
            _ => {
                // Skip a whole UTF-8 character.
                i += 1;
                while i < bytes.len() && !sql.is_char_boundary(i) {
                    i += 1;
                }
            }
        }
    }
    if plain_start < sql.len() {
        out.push((None, &sql[plain_start..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_keeps_every_character_and_escapes_markup() {
        let sql = "SELECT \"a\".\"id\", 'it''s <b>' FROM \"a\" WHERE \"id\" = $1 AND n > 2 -- é";
        let html = highlight(sql).into_string();
        assert!(html.contains("<span class=\"kw\">SELECT</span>"), "{html}");
        assert!(html.contains("<span class=\"param\">$1</span>"), "{html}");
        assert!(
            html.contains("<span class=\"str\">'it''s &lt;b&gt;'</span>"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
        let text: String = tokens(sql).into_iter().map(|(_, t)| t).collect();
        assert_eq!(text, sql);
    }
}
