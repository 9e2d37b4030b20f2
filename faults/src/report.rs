//! The figures of a run: one JSON record per fault, written to `FAULTS_REPORT_DIR`, and their
//! rendering as the Markdown tables of `docs/reliability.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize, Serializer};

use crate::invariants::Check;

/// `Duration` as seconds, for the JSON records.
pub(crate) fn secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// A threshold that is the target: recorded always, asserted under `FAULTS_STRICT=1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub limit: u64,
    pub actual: u64,
    pub met: bool,
}

/// How the failed requests were answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Failures {
    pub reads: usize,
    /// The keyed writes, by kind: every order, deposit and transfer carries an `Idempotency-Key`.
    pub orders: usize,
    pub deposits: usize,
    pub transfers: usize,
    /// Of all the failed, those that got no answer (reset, refused, deadline).
    pub unanswered: usize,
    /// Of those answered, the ones with `Retry-After`.
    pub with_retry_after: usize,
    /// "503 service_unavailable", "no answer: connect", … → count.
    pub by_answer: BTreeMap<String, usize>,
}

impl Failures {
    /// Failed orders, deposits and transfers together.
    pub fn keyed_writes(&self) -> usize {
        self.orders + self.deposits + self.transfers
    }
}

/// Latencies, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What `/readyz`, asked every 250 ms beside the load, answered during the fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Readyz {
    pub probes: usize,
    pub ready: usize,
    pub not_ready: usize,
    pub unanswered: usize,
    pub max_ms: f64,
}

/// The resending of failed keyed writes after the fault, by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resent {
    pub orders: ResentKind,
    pub deposits: ResentKind,
    pub transfers: ResentKind,
}

impl Resent {
    /// The three kinds added up.
    pub fn total(&self) -> ResentKind {
        let kinds = [&self.orders, &self.deposits, &self.transfers];
        ResentKind {
            resent: kinds.iter().map(|k| k.resent).sum(),
            acknowledged: kinds.iter().map(|k| k.acknowledged).sum(),
            attempts: kinds.iter().map(|k| k.attempts).sum(),
            exactly_one: kinds.iter().map(|k| k.exactly_one).sum(),
        }
    }
}

/// The resending of the failed writes of one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResentKind {
    pub resent: usize,
    pub acknowledged: usize,
    pub attempts: u32,
    /// Keys holding exactly one row afterwards, among those acknowledged.
    pub exactly_one: usize,
}

/// Everything one fault test measured and checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    /// A stable id, also the file name: `backend_kills`, `stop_start`, …
    pub fault: String,
    /// What was done, in a phrase.
    pub description: String,
    /// Where it sorts in the table.
    pub order: u32,
    /// Mercado's settings that differ from the suite's defaults.
    pub settings: Vec<String>,
    pub clients: usize,
    pub load_seconds: f64,
    pub requests: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub failures: Failures,
    pub deadline_exceeded: usize,
    pub resent: Resent,
    /// From the first fault action to the last one's end, from the start of the load.
    pub fault_window_s: (f64, f64),
    /// The requests sent from the fault's start until Mercado had recovered.
    pub during_fault: Latency,
    /// The requests sent before the fault.
    pub before_fault: Latency,
    /// `/readyz` from the fault's start until Mercado had recovered.
    pub readyz_during_fault: Readyz,
    /// From the fault's end until `/readyz` answered 200 and an authenticated read succeeded.
    pub time_to_recover_ms: Option<f64>,
    pub mercado_restarts: u32,
    pub invariants: Vec<Check>,
    pub targets: Vec<Target>,
    pub strict: bool,
    pub passed: bool,
    pub test_seconds: f64,
}

impl FaultRecord {
    /// Write it as `<dir>/<fault>.json`.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.fault));
        let text = serde_json::to_string_pretty(self).context("serializing the record")?;
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Every `*.json` record in `dir`, in table order.
pub fn read_records(dir: &Path) -> anyhow::Result<Vec<FaultRecord>> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: FaultRecord = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            records.push(record);
        }
    }
    records.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.fault.cmp(&b.fault)));
    Ok(records)
}

fn ms(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

/// The records as Markdown: the main table, then how the failures were answered, the targets,
/// and the invariants that did not hold, if any.
pub fn render_markdown(records: &[FaultRecord]) -> String {
    let mut out = String::new();
    out.push_str(
        "| fault | load | requests | failed | reads failed | keyed writes failed (orders / \
         deposits / transfers) | resent (orders / deposits / transfers) → one row | \
         p99 before | p99 (max) during fault | recovered in | invariants |\n",
    );
    out.push_str(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in records {
        let settings = if r.settings.is_empty() {
            String::new()
        } else {
            format!(", {}", r.settings.join(", "))
        };
        let recovered = match r.time_to_recover_ms {
            Some(value) => ms(value),
            None => "never".to_owned(),
        };
        let held = r.invariants.iter().filter(|c| c.passed).count();
        let invariants = if held == r.invariants.len() {
            format!("{held}/{} hold", r.invariants.len())
        } else {
            format!("**{held}/{} hold**", r.invariants.len())
        };
        let resent = r.resent.total();
        out.push_str(&format!(
            "| {} | {} clients × {:.0} s{} | {} | {} ({:.2} %) | {} | {} ({} / {} / {}) | {} ({} / {} / {}) → {} | {} | {} ({}) | {} | {} |\n",
            r.description,
            r.clients,
            r.load_seconds,
            settings,
            r.requests,
            r.failed,
            percent(r.failed, r.requests),
            r.failures.reads,
            r.failures.keyed_writes(),
            r.failures.orders,
            r.failures.deposits,
            r.failures.transfers,
            resent.resent,
            r.resent.orders.resent,
            r.resent.deposits.resent,
            r.resent.transfers.resent,
            resent.exactly_one,
            ms(r.before_fault.p99_ms),
            ms(r.during_fault.p99_ms),
            ms(r.during_fault.max_ms),
            recovered,
            invariants,
        ));
    }

    out.push_str(
        "\nHow the failed requests were answered, and what `/readyz` said meanwhile:\n\n\
         | fault | answers | with `Retry-After` | `/readyz` during the fault |\n\
         | --- | --- | ---: | --- |\n",
    );
    for r in records {
        let answers = if r.failures.by_answer.is_empty() {
            "—".to_owned()
        } else {
            r.failures
                .by_answer
                .iter()
                .map(|(answer, count)| format!("{count} × {answer}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let answered = r.failed - r.failures.unanswered;
        let z = &r.readyz_during_fault;
        out.push_str(&format!(
            "| {} | {} | {} of {} answered | {} × 200, {} × 503, {} unanswered; slowest {} |\n",
            r.description,
            answers,
            r.failures.with_retry_after,
            answered,
            z.ready,
            z.not_ready,
            z.unanswered,
            ms(z.max_ms)
        ));
    }

    let targets: Vec<&FaultRecord> = records.iter().filter(|r| !r.targets.is_empty()).collect();
    if !targets.is_empty() {
        out.push_str("\nTargets (asserted with `FAULTS_STRICT=1`):\n\n| fault | target | actual | met |\n| --- | --- | ---: | --- |\n");
        for r in targets {
            for t in &r.targets {
                out.push_str(&format!(
                    "| {} | {} ≤ {} | {} | {} |\n",
                    r.description,
                    t.name,
                    t.limit,
                    t.actual,
                    if t.met { "yes" } else { "**no**" }
                ));
            }
        }
    }

    let broken: Vec<(&FaultRecord, &Check)> = records
        .iter()
        .flat_map(|r| {
            r.invariants
                .iter()
                .filter(|c| !c.passed)
                .map(move |c| (r, c))
        })
        .collect();
    if !broken.is_empty() {
        out.push_str("\nInvariants that did not hold:\n\n");
        for (r, c) in broken {
            out.push_str(&format!("- {}: {} — {}\n", r.description, c.name, c.detail));
        }
    }

    out.push_str(
        "\nColumns: *requests* sent by the load (closed loop, no think time; a client pauses \
         25 ms after a failure); *failed* = not 2xx, including no answer at all; every order, \
         deposit and transfer carries an `Idempotency-Key`, so all three are *keyed writes*; \
         *resent → one row*: failed keyed writes sent again with their key and body after the \
         fault, and how many of their keys then hold exactly one order, deposit or transfer; *p99 before*: requests sent before the \
         fault; *during fault*: requests sent from the fault's start until Mercado had \
         recovered; *recovered in*: from the fault's end until `/readyz` answered 200 and an \
         authenticated read succeeded. Invariants are checked in the database after each run. \
         Mercado runs with `REQUEST_TIMEOUT=10s` and, unless a row says otherwise, its default \
         settings (a pool of 10, acquire timeout 5 s, `statement_timeout` 30 s); each client's \
         deadline is 12 s.\n",
    );
    out
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The percentile `p` (0–100) of `values`, by nearest rank; 0 for none.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_is_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut values, 99.0), 99.0);
        assert_eq!(percentile(&mut values, 50.0), 50.0);
        assert_eq!(percentile(&mut values, 100.0), 100.0);
        assert_eq!(percentile(&mut [], 99.0), 0.0);
        assert_eq!(percentile(&mut [7.0], 99.0), 7.0);
    }
}
