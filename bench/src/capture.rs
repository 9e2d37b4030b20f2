//! What the SQL capture costs: the last-10 service call at 8 tasks, and alone, on three
//! connections to one database that differ only in what watches their statements:
//! - `plain`: no capture callback at all;
//! - `capture, detector off`: `sql_observe` installed with `DetectorMode::Off`, each call in a
//!   scope (statements parsed, values rendered, captured; no stack walk, no analysis);
//! - `capture, detector on`: the application's configuration, each call in a scope, as every
//!   HTTP request runs (the above, plus the stack walk per statement and the analysis when the
//!   scope ends).
//!
//! Rounds alternate the three, so that drift on a shared machine hits them alike; each figure
//! is the median over rounds, with the spread of the per-round ratios. Besides throughput, each
//! load run reads this process's CPU time (user + system, all threads, from `/proc/self/stat`)
//! before and after: CPU per request is steadier than throughput where the database shares the
//! cores, and its difference per statement is what the capture costs.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use serde::Serialize;
use sql_observe::{self as observe, DetectorMode, Scope};

use crate::{
    last10::{list_last10, sample_pairs},
    load::run_for,
    setup::{BenchDatabase, seeded_ids},
    stats::{median, ratio},
};

/// The statements one last-10 call sends.
const STATEMENTS_PER_CALL: f64 = 3.0;
/// This process's CPU time so far, user and system, in seconds.
fn process_cpu_seconds() -> anyhow::Result<f64> {
    crate::cpu::process_cpu_seconds(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Variant {
    Plain,
    DetectorOff,
    DetectorOn,
}

const VARIANTS: [Variant; 3] = [Variant::Plain, Variant::DetectorOff, Variant::DetectorOn];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain (no capture)",
            Variant::DetectorOff => "capture, detector off",
            Variant::DetectorOn => "capture, detector on",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct VariantFigures {
    variant: Variant,
    /// Requests per second at `concurrency` tasks, one figure per round.
    throughput_per_round: Vec<f64>,
    median_throughput_per_s: f64,
    /// Single-task latency medians per round, in microseconds.
    single_task_p50_us_per_round: Vec<f64>,
    median_single_task_p50_us: f64,
    /// This process's CPU time per request under load, in microseconds, one figure per round.
    cpu_us_per_request_per_round: Vec<f64>,
    median_cpu_us_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaptureCost {
    concurrency: u32,
    rounds: usize,
    seconds_per_run: f64,
    variants: Vec<VariantFigures>,
    /// Throughput with the full capture ÷ without any: the median of the per-round ratios,
    /// and their lowest and highest.
    on_over_plain: (f64, f64, f64),
    off_over_plain: (f64, f64, f64),
    /// Added single-task latency per captured statement, against plain, in ns (noisy: it
    /// includes the database's time).
    latency_ns_per_statement_on: f64,
    latency_ns_per_statement_off: f64,
    /// Added CPU time of this process per captured statement, against plain, in ns.
    cpu_ns_per_statement_on: f64,
    cpu_ns_per_statement_off: f64,
}

fn spread(ratios: &[f64]) -> (f64, f64, f64) {
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(ratios), low, high)
}

async fn call(
    db: DatabaseConnection,
    variant: Variant,
    user: i64,
    conversation: i64,
) -> Result<(), String> {
    if variant == Variant::Plain {
        return list_last10(&db, user, conversation).await;
    }
    let (result, _report) = observe::scope(
        Scope::request("GET /conversations/{id}/messages"),
        list_last10(&db, user, conversation),
    )
    .await;
    result
}

async fn single_task_p50_us(
    db: &DatabaseConnection,
    variant: Variant,
    pairs: &[(i64, i64)],
    iterations: usize,
) -> Result<f64, String> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let (conversation, user) = pairs[i % pairs.len()];
        let started = Instant::now();
        call(db.clone(), variant, user, conversation).await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(&samples))
}

pub(crate) async fn run(
    db: &BenchDatabase,
    concurrency: u32,
    rounds: usize,
    seconds: f64,
    single_task_iterations: usize,
) -> anyhow::Result<CaptureCost> {
    let ids = seeded_ids(db).await?;
    let pairs = Arc::new(sample_pairs(db, &ids, 200).await?);
    let mut detector_off = db.plain.clone();
    observe::install(
        &mut detector_off,
        api::sql_scope::observe_config().with_mode(DetectorMode::Off),
    );
    let connection = |variant: Variant| match variant {
        Variant::Plain => db.plain.clone(),
        Variant::DetectorOff => detector_off.clone(),
        Variant::DetectorOn => db.app.clone(),
    };
    // Warm the pool, the server's caches and the detector's symbol-free path.
    for variant in VARIANTS {
        single_task_p50_us(&connection(variant), variant, &pairs, 200)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut latency: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        // Each round starts with a different variant, so none always runs first.
        for offset in 0..VARIANTS.len() {
            let index = (round + offset) % VARIANTS.len();
            let variant = VARIANTS[index];
            let conn = connection(variant);
            let chosen = Arc::clone(&pairs);
            let cpu_before = process_cpu_seconds()?;
            let figures = run_for(
                concurrency,
                Duration::from_secs_f64(seconds),
                pairs.len(),
                move |i| {
                    let (conversation, user) = chosen[i];
                    call(conn.clone(), variant, user, conversation)
                },
            )
            .await?;
            if figures.errors > 0 {
                anyhow::bail!("{}: {:?}", variant.label(), figures.errors_by_kind);
            }
            let cpu_us =
                (process_cpu_seconds()? - cpu_before) * 1e6 / figures.requests.max(1) as f64;
            cpu[index].push(cpu_us);
            throughput[index].push(figures.throughput_per_s);
            let p50 = single_task_p50_us(
                &connection(variant),
                variant,
                &pairs,
                single_task_iterations,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            latency[index].push(p50);
            println!(
                "  round {round}: {:<24} {:>7.0} req/s × {concurrency}, {cpu_us:.1} µs CPU/request, single task p50 {p50:.1} µs",
                variant.label(),
                figures.throughput_per_s
            );
        }
    }
    let per_round_ratio = |numerator: usize| -> Vec<f64> {
        throughput[numerator]
            .iter()
            .zip(&throughput[0])
            .map(|(n, d)| ratio(*n, *d))
            .collect()
    };
    let latency_ns_per_statement = |index: usize| {
        (median(&latency[index]) - median(&latency[0])) * 1000.0 / STATEMENTS_PER_CALL
    };
    let cpu_ns_per_statement =
        |index: usize| (median(&cpu[index]) - median(&cpu[0])) * 1000.0 / STATEMENTS_PER_CALL;
    let cost = CaptureCost {
        concurrency,
        rounds,
        seconds_per_run: seconds,
        on_over_plain: spread(&per_round_ratio(2)),
        off_over_plain: spread(&per_round_ratio(1)),
        latency_ns_per_statement_on: latency_ns_per_statement(2),
        latency_ns_per_statement_off: latency_ns_per_statement(1),
        cpu_ns_per_statement_on: cpu_ns_per_statement(2),
        cpu_ns_per_statement_off: cpu_ns_per_statement(1),
        variants: VARIANTS
            .iter()
            .enumerate()
            .map(|(index, variant)| VariantFigures {
                variant: *variant,
                median_throughput_per_s: median(&throughput[index]),
                throughput_per_round: throughput[index].clone(),
                median_single_task_p50_us: median(&latency[index]),
                single_task_p50_us_per_round: latency[index].clone(),
                median_cpu_us_per_request: median(&cpu[index]),
                cpu_us_per_request_per_round: cpu[index].clone(),
            })
            .collect(),
    };
    println!(
        "  capture on ÷ plain: {:.3} (rounds {:.3}–{:.3}); detector off ÷ plain: {:.3} ({:.3}–{:.3})",
        cost.on_over_plain.0,
        cost.on_over_plain.1,
        cost.on_over_plain.2,
        cost.off_over_plain.0,
        cost.off_over_plain.1,
        cost.off_over_plain.2
    );
    println!(
        "  added CPU per statement: {:.0} ns with the detector, {:.0} ns without; added \
         single-task latency per statement: {:.0} ns with, {:.0} ns without",
        cost.cpu_ns_per_statement_on,
        cost.cpu_ns_per_statement_off,
        cost.latency_ns_per_statement_on,
        cost.latency_ns_per_statement_off
    );
    Ok(cost)
}
