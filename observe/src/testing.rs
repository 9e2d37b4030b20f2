//! Assertions for tests: how many statements a block sends, and whether that number grows with
//! the size of the data. Like `assert_eq!`, they panic with a message that lists the statements.
//! They need a connection on which [`crate::install`] was called.

use std::future::Future;

use crate::{
    capture::{Scope, scope},
    report::ScopeReport,
};

fn listing(report: &ScopeReport) -> String {
    report
        .statements
        .iter()
        .map(|s| format!("  {}. {s}", s.sequence))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `block` and asserts that it sent exactly `expected` statements.
pub async fn assert_statement_count<F: Future>(expected: usize, block: F) -> F::Output {
    let (output, report) = scope(Scope::test("assert_statement_count"), block).await;
    let actual = report.statement_count();
    assert!(
        actual == expected,
        "expected {expected} statement(s), the block sent {actual}:\n{}",
        listing(&report)
    );
    output
}

/// Runs `block` and asserts that it sent at most `max` statements.
pub async fn assert_statements_at_most<F: Future>(max: usize, block: F) -> F::Output {
    let (output, report) = scope(Scope::test("assert_statements_at_most"), block).await;
    let actual = report.statement_count();
    assert!(
        actual <= max,
        "expected at most {max} statement(s), the block sent {actual}:\n{}",
        listing(&report)
    );
    output
}

/// The sizes [`assert_no_growth`] runs a scenario at.
pub const SCALING_SIZES: [usize; 3] = [2, 5, 10];

/// Runs `scenario(n)` for n = 2, 5 and 10, each in its own scope, and asserts that no
/// fingerprint runs more often at a larger n: a query count that grows with the data is an N+1
/// whatever its absolute size, so there is no threshold to tune. The scenario should arrange
/// its n rows inside [`crate::unobserved`] (or before it starts), so that only the code under
/// test is counted. Returns the three reports.
pub async fn assert_no_growth<S, Fut>(mut scenario: S) -> Vec<ScopeReport>
where
    S: FnMut(usize) -> Fut,
    Fut: Future,
{
    let mut reports = Vec::new();
    for n in SCALING_SIZES {
        let (_, report) = scope(Scope::test(format!("scaling n={n}")), scenario(n)).await;
        reports.push(report);
    }
    let count_of = |report: &ScopeReport, fingerprint: &str| {
        report
            .statements
            .iter()
            .filter(|s| s.fingerprint == fingerprint)
            .count()
    };
    let mut growing = Vec::new();
    for report in &reports {
        for (fingerprint, _) in report.fingerprint_counts() {
            let counts: Vec<usize> = reports.iter().map(|r| count_of(r, &fingerprint)).collect();
            let grows = counts.windows(2).any(|pair| pair[1] > pair[0]);
            if grows && !growing.iter().any(|(f, _): &(String, _)| *f == fingerprint) {
                growing.push((fingerprint, counts));
            }
        }
    }
    assert!(
        growing.is_empty(),
        "statement counts grow with n (n = {SCALING_SIZES:?}):\n{}",
        growing
            .iter()
            .map(|(fingerprint, counts)| format!("  {counts:?} x {fingerprint}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    reports
}
