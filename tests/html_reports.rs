//! `mercado demo --html FILE` and `mercado compare --html FILE`, run as a user runs them, on a
//! fresh SQLite file: each writes one self-contained page with the inspector's view, the
//! strategies (or sides) side by side, and the N+1 badge on the lazy strategy only.

use std::process::Command;

fn run(command: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    let page = dir.join(format!("{command}.html"));
    let output = Command::new(env!("CARGO_BIN_EXE_mercado"))
        .args([command, "--html"])
        .arg(&page)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("mercado.db").display()),
        )
        .env("LOG_LEVEL", "warn")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "mercado {command} failed: {output:?}"
    );
    Ok(std::fs::read_to_string(page)?)
}

#[test]
fn demo_writes_the_strategies_side_by_side_with_the_n_plus_one_badge_on_lazy_loading_only()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    let html = run("demo", dir.path())?;

    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.contains("<script"), "a static report has no script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing is fetched"
    );
    let columns: Vec<&str> = html.split("<div class=\"column\"").skip(1).collect();
    assert!(
        columns.len() >= 6,
        "three strategies for each of at least two questions"
    );
    for column in &columns {
        let lazy = column.contains("<h3>lazy");
        let badge = column.contains("data-n-plus-one=\"true\"");
        assert_eq!(
            lazy, badge,
            "the N+1 badge is on lazy loading only: {column}"
        );
        assert!(
            column.contains("<pre class=\"sql\"><span class=\"kw\">SELECT</span>"),
            "{column}"
        );
    }
    assert!(html.contains("class=\"waterfall\""), "{html}");
    Ok(())
}

#[test]
fn compare_writes_all_three_sides_of_every_case() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    let html = run("compare", dir.path())?;

    let sections = html.matches("<section class=\"report-section\">").count();
    assert!(sections >= 3, "{html}");
    assert_eq!(
        html.matches("<div class=\"column\"").count(),
        3 * sections,
        "three sides a case"
    );
    assert_eq!(html.matches("<h3>raw SQL</h3>").count(), sections);
    assert_eq!(html.matches("<h3>done right (").count(), sections);
    assert!(html.contains("Identical results: yes"), "{html}");
    assert!(!html.contains("NO (a bug)"), "{html}");
    Ok(())
}
