//! `mercado demo` and `mercado compare`: run `mercado_lab::loading` and `mercado_lab::compare`
//! and print what they found, for people (text) or for tools (`--json`). Nothing here talks to
//! the database except through those modules and the schema check both need first.

use anyhow::Context;
use mercado::schema::{SchemaPolicy, ensure_schema};
use mercado_lab::{
    compare::{self, CompareReport, SideReport},
    loading::{self, DemoReport},
};
use sea_orm::DatabaseConnection;
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

pub(crate) async fn demo(db: &DatabaseConnection, json: bool) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Experiment).await?;
    let report = loading::run_demo(db, 5)
        .await
        .context("running the loading demo")?;
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

pub(crate) async fn compare(db: &DatabaseConnection, json: bool) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Experiment).await?;
    let report = compare::run_compare(db, api::sql_scope::observe_config())
        .await
        .context("running the ORM/raw SQL comparison")?;
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
        "ORM vs raw SQL on {} (median of {} runs each, in a transaction rolled back at the end)\n",
        report.backend, report.runs
    );
    for case in &report.cases {
        println!("== {}", case.name);
        print_side(&format!("ORM ({})", case.orm_api), &case.orm);
        print_side("raw SQL", &case.raw);
        let identical = if case.identical { "yes" } else { "NO (a bug)" };
        println!(
            "   identical results: {identical}; ORM/raw time ratio: {:.2}",
            case.ratio
        );
        for (label, side) in [("ORM", &case.orm), ("raw", &case.raw)] {
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
