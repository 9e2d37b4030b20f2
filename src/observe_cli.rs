//! `mercado demo` and `mercado compare`: run `mercado_lab::loading` and `mercado_lab::compare`
//! and print what they found, for people (text) or for tools (`--json`), and with `--html FILE`
//! write it as a static page too, rendered by the SQL inspector's own code
//! ([`sql_inspector::report`]): the strategies or sides of each question side by side. Nothing
//! here talks to the database except through those modules and the schema check both need first.

use std::path::Path;

use anyhow::Context;
use mercado::schema::{SchemaPolicy, ensure_schema};
use mercado_lab::{
    compare::{self, CompareReport, SideReport},
    loading::{self, DemoReport},
};
use sea_orm::DatabaseConnection;
use sql_inspector::{
    Trace,
    report::{Column, ColumnBody, Section},
};
use sql_observe::CapturedStatement;

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// Statements grouped by fingerprint, in first-run order, with one example's values.
fn grouped(statements: &[CapturedStatement]) -> Vec<(usize, &CapturedStatement)> {
    let mut groups: Vec<(usize, &CapturedStatement)> = Vec::new();
    for statement in statements {
        match groups
            .iter_mut()
            .find(|(_, first)| first.fingerprint == statement.fingerprint)
        {
            Some((count, _)) => *count += 1,
            None => groups.push((1, statement)),
        }
    }
    groups
}

/// Writes `html` to `path`, and says where.
fn write_html(path: &Path, html: &str) -> anyhow::Result<()> {
    std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub(crate) async fn demo(
    db: &DatabaseConnection,
    json: bool,
    html: Option<&Path>,
) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Experiment).await?;
    let report = loading::run_demo(db, 5)
        .await
        .context("running the loading demo")?;
    if let Some(path) = html {
        write_html(path, &demo_html(&report))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_demo(&report);
    }
    Ok(())
}

fn print_demo(report: &DemoReport) {
    println!(
        "Loading strategies on {} (demo data inserted in a transaction, rolled back at the end)\n",
        report.backend
    );
    for section in &report.sections {
        println!("== {}", section.question);
        println!("   {}\n", section.relation);
        for run in &section.runs {
            println!("-- {}: {}", run.strategy.label(), run.api);
            let verdict = if run.n_plus_one {
                "N+1 DETECTED"
            } else {
                "no N+1"
            };
            let rows = run
                .rows
                .map_or_else(String::new, |rows| format!(", {rows} row(s)"));
            println!(
                "   {} statement(s){rows}, {} (database {}); {verdict}",
                run.statement_count,
                ms(run.elapsed_us),
                ms(run.database_time_us)
            );
            for finding in run.findings.iter().filter(|f| f.safelisted.is_none()) {
                println!(
                    "   ! {:?}: {}x at {}",
                    finding.kind,
                    finding.count,
                    finding
                        .call_site
                        .as_deref()
                        .unwrap_or("an unknown call site")
                );
                println!("     fix: {}", finding.fix);
            }
            for (count, example) in grouped(&run.statements) {
                let rows = example
                    .rows
                    .map_or_else(String::new, |rows| format!("  -- e.g. {rows} row(s)"));
                println!("   {count:>3}x {}{rows}", example.sql);
                if !example.params.is_empty() {
                    println!("        -- e.g. [{}]", example.params.join(", "));
                }
            }
            println!();
        }
        println!("   When to prefer which:");
        for line in section.advice {
            println!("   {line}");
        }
        let same = if section.same_answer {
            "yes"
        } else {
            "NO (a bug)"
        };
        println!("   Same answer from all three strategies: {same}\n");
    }
}

pub(crate) async fn compare(
    db: &DatabaseConnection,
    json: bool,
    html: Option<&Path>,
) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Experiment).await?;
    let report = compare::run_compare(db, api::sql_scope::observe_config())
        .await
        .context("running the ORM/raw SQL comparison")?;
    if let Some(path) = html {
        write_html(path, &compare_html(&report))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_compare(&report);
    }
    Ok(())
}

fn print_side(label: &str, side: &SideReport) {
    println!(
        "   {label}: {} statement(s), median {}",
        side.statement_count,
        ms(side.median_us)
    );
    for sql in &side.sql {
        println!("      {sql}");
    }
}

fn print_compare(report: &CompareReport) {
    println!(
        "The ORM's first attempt, the ORM done right, and raw SQL on {} (median of {} runs each, \
         in a transaction rolled back at the end)\n",
        report.backend, report.runs
    );
    for case in &report.cases {
        println!("== {}", case.name);
        print_side(&format!("first attempt ({})", case.orm_api), &case.orm);
        print_side(&format!("done right ({})", case.tuned_api), &case.tuned);
        print_side("raw SQL", &case.raw);
        let identical = if case.identical { "yes" } else { "NO (a bug)" };
        println!(
            "   identical results: {identical}; time over raw: first attempt {:.2}, done right {:.2}",
            case.ratio, case.tuned_ratio
        );
        for (label, side) in [
            ("first attempt", &case.orm),
            ("done right", &case.tuned),
            ("raw", &case.raw),
        ] {
            for (index, plan) in side.explain.iter().flatten().enumerate() {
                println!("   EXPLAIN ({label}, statement {}):", index + 1);
                for line in plan {
                    println!("      {line}");
                }
            }
        }
        println!();
    }
}

/// The demo as a page: one section per question, one column per strategy, each with the
/// inspector's full view of its statements.
fn demo_html(report: &DemoReport) -> String {
    let sections: Vec<Section> = report
        .sections
        .iter()
        .map(|section| Section {
            title: section.question.to_owned(),
            notes: std::iter::once(section.relation.to_owned())
                .chain(section.advice.iter().map(|line| (*line).to_owned()))
                .chain(std::iter::once(format!(
                    "Same answer from every strategy: {}",
                    if section.same_answer {
                        "yes"
                    } else {
                        "NO (a bug)"
                    }
                )))
                .collect(),
            columns: section
                .runs
                .iter()
                .map(|run| Column {
                    label: run.strategy.label().to_owned(),
                    facts: vec![
                        ("SeaORM".to_owned(), run.api.to_owned()),
                        ("statements".to_owned(), run.statement_count.to_string()),
                        (
                            "rows".to_owned(),
                            run.rows
                                .map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
                        ),
                        ("wall time".to_owned(), ms(run.elapsed_us)),
                        ("database".to_owned(), ms(run.database_time_us)),
                    ],
                    body: ColumnBody::Trace(Trace::new(&run.statements, &run.findings, 500)),
                })
                .collect(),
        })
        .collect();
    let intro = [format!(
        "The same related data loaded lazily, joined and select-in on {}: the SQL each sends \
         and the N+1 detector's verdict. The demo data was inserted in a transaction rolled back \
         at the end.",
        report.backend
    )];
    sql_inspector::report::page("mercado demo: loading strategies", &intro, &sections)
}

/// One side of a comparison as a column: adding a side to `CaseReport` is one more line in
/// [`compare_html`].
fn side_column(label: &str, side: &SideReport) -> Column {
    Column {
        label: label.to_owned(),
        facts: vec![
            ("statements".to_owned(), side.statement_count.to_string()),
            ("median".to_owned(), ms(side.median_us)),
        ],
        body: ColumnBody::Sql {
            sql: side.sql.clone(),
            explain: side.explain.clone(),
        },
    }
}

/// The comparison as a page: one section per case, one column per side.
fn compare_html(report: &CompareReport) -> String {
    let sections: Vec<Section> = report
        .cases
        .iter()
        .map(|case| Section {
            title: case.name.to_owned(),
            notes: vec![format!(
                "Identical results: {}; time over raw: first attempt {:.2}, done right {:.2}",
                if case.identical { "yes" } else { "NO (a bug)" },
                case.ratio,
                case.tuned_ratio
            )],
            columns: vec![
                side_column(&format!("first attempt ({})", case.orm_api), &case.orm),
                side_column(&format!("done right ({})", case.tuned_api), &case.tuned),
                side_column("raw SQL", &case.raw),
            ],
        })
        .collect();
    let intro = [format!(
        "Canonical queries three ways on {} — the ORM's first attempt, the ORM done right, and \
         hand-written SQL — median of {} runs each, in a transaction rolled back at the end.",
        report.backend, report.runs
    )];
    sql_inspector::report::page(
        "mercado compare: the ORM two ways, and raw SQL",
        &intro,
        &sections,
    )
}
