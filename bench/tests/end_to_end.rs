//! The whole harness at a tiny scale against a real PostgreSQL server, when
//! `TEST_POSTGRES_URL` names one: it must finish, write every output, and carry figures for
//! every section. The databases get a random prefix and are dropped afterwards.

use std::{path::Path, process::Command};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_mercado-bench");

/// Drops the test's databases however the test ends, through the harness itself.
struct DropDatabases {
    server_url: String,
    prefix: String,
}

impl DropDatabases {
    /// The server of `TEST_POSTGRES_URL` and a random prefix for this test's databases, or
    /// `None` when no server is configured.
    fn for_this_test() -> Option<Self> {
        let server_url = std::env::var("TEST_POSTGRES_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())?;
        Some(Self {
            server_url,
            prefix: format!("benchtest_{:08x}", rand::random::<u32>()),
        })
    }
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let status = Command::new(BENCH)
            .args(["drop-databases", "--server-url", &self.server_url])
            .args(["--database-prefix", &self.prefix])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not drop the {}_* test databases; drop them by hand",
                self.prefix
            );
        }
    }
}

fn number(results: &Value, pointer: &str) -> f64 {
    results
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("results.json has no number at {pointer}"))
}

fn non_empty_array<'a>(results: &'a Value, pointer: &str) -> &'a Vec<Value> {
    let array = results
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("results.json has no array at {pointer}"));
    assert!(!array.is_empty(), "{pointer} is empty");
    array
}

#[test]
fn the_harness_runs_end_to_end_at_a_tiny_scale_and_writes_every_section() {
    let Some(databases) = DropDatabases::for_this_test() else {
        println!("skipped: set TEST_POSTGRES_URL (a PostgreSQL server URL) to run this test");
        return;
    };
    let (server_url, prefix) = (&databases.server_url, &databases.prefix);
    // The HTTP runs start the `mercado` binary built beside this harness (`cargo test
    // --workspace` builds it) and drive it with wrk.
    let mercado = Path::new(BENCH).with_file_name("mercado");
    assert!(
        mercado.is_file(),
        "{} is missing: build it with `cargo build -p mercado` (cargo test --workspace does)",
        mercado.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("benchmarks");
    let doc = dir.path().join("benchmarks.md");

    let output = Command::new(BENCH)
        .args([
            "run",
            "--server-url",
            server_url,
            "--scale",
            "tiny",
            "--allow-debug",
        ])
        .args(["--database-prefix", prefix])
        .arg("--mercado-bin")
        .arg(&mercado)
        .arg("--out")
        .arg(&out)
        .arg("--doc")
        .arg(&doc)
        .output()
        .expect("the harness starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the harness failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    for file in ["results.json", "loading.svg", "throughput.svg"] {
        assert!(
            Path::new(&out.join(file)).exists(),
            "{file} was not written"
        );
    }
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json is readable"),
    )
    .expect("results.json is JSON");

    assert!(number(&results, "/seeds/large/messages") > 0.0);
    assert_eq!(non_empty_array(&results, "/orm_vs_raw/cases").len(), 6);
    assert!(number(&results, "/orm_vs_raw/cases/0/orm/p50_us") > 0.0);
    assert!(number(&results, "/last10/service/0/throughput_per_s") > 0.0);
    assert!(number(&results, "/last10/http/0/throughput_per_s") > 0.0);
    assert_eq!(number(&results, "/last10/http/0/errors"), 0.0);
    assert!(number(&results, "/last10/http/0/wrk/latency_p99_us") > 0.0);
    // Service and HTTP rows at each of the tiny scale's two levels.
    let cpu = non_empty_array(&results, "/last10/cpu");
    assert_eq!(cpu.len(), 4);
    for row in cpu {
        assert!(number(row, "/cpu/app_us_per_request") > 0.0);
        assert!(number(row, "/cpu/postgres_us_per_request") > 0.0);
    }
    assert!(number(&results, "/overhead/observed_over_plain") > 0.0);
    assert!(number(&results, "/overhead/capture_only_over_plain") > 0.0);
    assert!(number(&results, "/last10/pgbench_last10/0/tps") > 0.0);
    assert!(number(&results, "/last10/pgbench_take_stock/0/tps") > 0.0);
    assert!(number(&results, "/last10/small_vs_large/large/p50_us") > 0.0);
    // 2 parent counts × 2 child counts × 3 strategies.
    assert_eq!(non_empty_array(&results, "/loading/cells").len(), 12);
    assert!(number(&results, "/orders/runs/0/load/requests") > 0.0);
    assert_eq!(number(&results, "/orders/runs/0/load/errors"), 0.0);
    assert!(number(&results, "/export/rows") > 0.0);
    assert!(number(&results, "/export/peak_rss_mib") > 0.0);
    assert_eq!(non_empty_array(&results, "/bulk/paths").len(), 4);
    assert_eq!(
        non_empty_array(&results, "/targets").len(),
        14,
        "six ORM cases and eight more"
    );
    assert!(results.pointer("/machine/cpu_model").is_some());

    let svg = std::fs::read_to_string(out.join("throughput.svg")).expect("the chart is readable");
    assert!(svg.contains("requests per second") && svg.contains("pgbench"));
    assert!(svg.contains("<circle"), "the chart has no data points");
    let markdown = std::fs::read_to_string(&doc).expect("the Markdown is readable");
    assert!(markdown.contains("<!-- generated by mercado-bench: begin -->"));
    assert!(markdown.contains("### 7. Bulk inserts"));
    assert!(markdown.contains("#### CPU time per request"));
}

#[test]
fn a_debug_build_refuses_to_run_without_allow_debug() {
    if !cfg!(debug_assertions) {
        println!("skipped: this is a release build, which runs without the flag");
        return;
    }
    let output = Command::new(BENCH)
        .args(["run", "--server-url", "postgres://nobody@127.0.0.1:1"])
        .output()
        .expect("the harness starts");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("debug build"));
}

#[test]
fn the_orm_gap_prices_statement_building_and_running_for_the_two_closest_cases_at_a_tiny_scale() {
    let Some(databases) = DropDatabases::for_this_test() else {
        println!("skipped: set TEST_POSTGRES_URL (a PostgreSQL server URL) to run this test");
        return;
    };
    let (server_url, prefix) = (&databases.server_url, &databases.prefix);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("orm-gap.json");

    let output = Command::new(BENCH)
        .args(["orm-gap", "--server-url", server_url, "--scale", "tiny"])
        .args(["--iterations", "20", "--allow-debug"])
        .args(["--database-prefix", prefix])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("the harness starts");
    assert!(
        output.status.success(),
        "orm-gap failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let gap: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("orm-gap.json is readable"))
            .expect("orm-gap.json is JSON");
    let cases = non_empty_array(&gap, "/cases");
    let names: Vec<&str> = cases
        .iter()
        .filter_map(|case| case.get("case").and_then(Value::as_str))
        .collect();
    assert_eq!(names, ["last_messages", "order_lines"]);
    for index in 0..cases.len() {
        assert!(number(&gap, &format!("/cases/{index}/build_ns")) > 0.0);
        for side in ["tuned", "built_once", "raw_sqlx"] {
            assert_eq!(number(&gap, &format!("/cases/{index}/{side}/count")), 20.0);
            assert!(number(&gap, &format!("/cases/{index}/{side}/p50_us")) > 0.0);
        }
    }
}
