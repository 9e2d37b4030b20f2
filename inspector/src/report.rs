//! Static HTML reports with the inspector's view: sections of columns side by side (the loading
//! strategies of one question, the sides of one comparison), each column a label, a few facts
//! and either a full [`Trace`] or the statements' SQL alone. [`page`] renders them into one
//! self-contained file (the stylesheet embedded, no script, nothing fetched).

use maud::{Markup, html};

use crate::{Trace, render};

/// One question or case, its columns side by side.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// Lines shown under the title.
    pub notes: Vec<String>,
    pub columns: Vec<Column>,
}

/// One strategy or side.
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    /// `(name, value)` pairs shown under the label.
    pub facts: Vec<(String, String)>,
    pub body: ColumnBody,
}

/// What a column shows below its facts.
#[derive(Debug, Clone)]
pub enum ColumnBody {
    /// Every statement with values, durations, findings and the waterfall.
    Trace(Trace),
    /// The SQL of each statement, formatted and highlighted, and its plan when there is one.
    Sql {
        sql: Vec<String>,
        explain: Option<Vec<Vec<String>>>,
    },
}

/// The whole report as an HTML document.
pub fn page(title: &str, intro: &[String], sections: &[Section]) -> String {
    let body = html! {
        header {
            h1 { (title) }
            @for line in intro { p.note { (line) } }
        }
        @for section in sections {
            section.report-section {
                h2 { (section.title) }
                @for line in &section.notes { p.note { (line) } }
                div.columns {
                    @for column in &section.columns { (column_block(column)) }
                }
            }
        }
    };
    render::page(title, body, false).into_string()
}

fn column_block(column: &Column) -> Markup {
    let n_plus_one =
        matches!(&column.body, ColumnBody::Trace(trace) if trace.n_plus_one_count() > 0);
    html! {
        div.column data-n-plus-one=(n_plus_one) {
            h3 {
                (column.label)
                @if n_plus_one { " " span.badge.n-plus-one { "N+1" } }
            }
            dl.facts {
                @for (name, value) in &column.facts { dt { (name) } dd { (value) } }
            }
            @match &column.body {
                ColumnBody::Trace(trace) => (render::trace(trace, None)),
                ColumnBody::Sql { sql, explain } => {
                    @for (index, statement) in sql.iter().enumerate() {
                        div.statement {
                            p.statement-head { strong { "#" (index + 1) } }
                            pre.sql { (render::highlight(&render::format_sql(statement))) }
                            @if let Some(plan) = explain.as_ref().and_then(|plans| plans.get(index)) {
                                details { summary { "EXPLAIN" } pre.plan { (plan.join("\n")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
