//! What the SQL capture and the row counting cost the last-10 service call, in the full run:
//! the closed-loop load of section 2 at 8 tasks, in child processes of this harness
//! (`mercado-bench overhead-child`), rotating three variants round after round:
//! - `plain`: the pool as `service::db::connect_with` builds it, no capture callback, no
//!   tracing subscriber;
//! - `observed`: as the binary runs: the pool with sqlx's per-statement events on
//!   (`sql_observe::count_rows`), the capture installed with `api::sql_scope::observe_config()`
//!   (detector on), each call in a request scope, and `sql_observe::row_count_layer()` in the
//!   process's subscriber (no log printer, so no log line is charged to either);
//! - `capture_only`: `observed` without the row counts (no sqlx statement events, no
//!   subscriber): what the capture and the detector cost on their own, so that the rest of
//!   `observed`'s cost is known to be the row counting's.
//!
//! Child processes, because a tracing subscriber is process-wide: installed in this process, it
//! would make sqlx format its events on every connection, the plain one too. Each child warms
//! up, then reads its own CPU time (`/proc/self/stat`) around the timed load. `capture-cost`
//! (`capture.rs`) splits the capture's cost further (detector on against off), without the
//! row-count layer.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sql_observe::{self as observe, Scope};
use url::Url;

use crate::{
    cpu,
    last10::list_last10,
    load::run_for,
    stats::{median, ratio},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    Plain,
    Observed,
    // One spelling everywhere: the child's flag, the JSON and the report.
    #[value(name = "capture_only")]
    CaptureOnly,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Observed => "observed",
            Variant::CaptureOnly => "capture_only",
        }
    }
}

/// What one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildFigures {
    pub(crate) variant: Variant,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) throughput_per_s: f64,
    /// The child's CPU time (all threads) per request during the timed load, in µs.
    pub(crate) cpu_us_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overhead {
    pub(crate) concurrency: u32,
    pub(crate) rounds: usize,
    pub(crate) seconds_per_run: f64,
    pub(crate) runs: Vec<ChildFigures>,
    pub(crate) plain_median_throughput_per_s: f64,
    pub(crate) observed_median_throughput_per_s: f64,
    pub(crate) capture_only_median_throughput_per_s: f64,
    /// Observed ÷ plain throughput, per round.
    pub(crate) observed_over_plain_per_round: Vec<f64>,
    /// Their median: 1 − this is the capture's and row counting's cost.
    pub(crate) observed_over_plain: f64,
    /// Capture-only ÷ plain throughput, per round, and their median.
    pub(crate) capture_only_over_plain_per_round: Vec<f64>,
    pub(crate) capture_only_over_plain: f64,
    pub(crate) plain_median_cpu_us_per_request: f64,
    pub(crate) observed_median_cpu_us_per_request: f64,
    pub(crate) capture_only_median_cpu_us_per_request: f64,
}

/// The hidden `overhead-child` subcommand.
pub(crate) async fn child(
    url: &Url,
    variant: Variant,
    concurrency: u32,
    seconds: f64,
    pairs_file: &Path,
) -> anyhow::Result<()> {
    let pairs: Vec<(i64, i64)> = serde_json::from_str(
        &std::fs::read_to_string(pairs_file)
            .with_context(|| format!("reading {}", pairs_file.display()))?,
    )?;
    if pairs.is_empty() {
        bail!("{}: no (conversation, user) pair", pairs_file.display());
    }
    let mut settings = service::db::DatabaseSettings::for_url(url.as_str());
    settings.application_name = "mercado-bench".to_owned();
    let pooler = settings.pooler;
    let counts_rows = variant == Variant::Observed;
    if counts_rows {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry()
            .with(observe::row_count_layer())
            .try_init()?;
    }
    let mut db = service::db::connect_with(&settings, |options| {
        if counts_rows {
            observe::count_rows(options);
        }
        service::db::cancel_abandoned_statements(options, pooler);
    })
    .await?;
    if variant != Variant::Plain {
        observe::install(&mut db, api::sql_scope::observe_config());
    }
    let call = move |db: sea_orm::DatabaseConnection, (conversation, user): (i64, i64)| async move {
        match variant {
            Variant::Plain => list_last10(&db, user, conversation).await,
            Variant::Observed | Variant::CaptureOnly => {
                let (result, report) = observe::scope(
                    Scope::request("GET /conversations/{id}/messages"),
                    list_last10(&db, user, conversation),
                )
                .await;
                // Captured, with the row counts where they are on, or the variant measures
                // less than it says.
                if report.statements.is_empty() {
                    return Err("no statement was captured".to_owned());
                }
                if counts_rows && report.statements.iter().any(|s| s.rows.is_none()) {
                    return Err("a captured statement has no row count".to_owned());
                }
                result
            }
        }
    };
    // Warm the pool, the server's caches and the capture's caches.
    for &pair in pairs.iter().cycle().take(pairs.len().max(200)) {
        call(db.clone(), pair).await.map_err(anyhow::Error::msg)?;
    }
    let pairs = std::sync::Arc::new(pairs);
    let chosen = std::sync::Arc::clone(&pairs);
    let load_db = db.clone();
    let cpu_before = cpu::process_cpu_seconds(None)?;
    let figures = run_for(
        concurrency,
        Duration::from_secs_f64(seconds),
        pairs.len(),
        move |i| call(load_db.clone(), chosen[i]),
    )
    .await?;
    let cpu_seconds = cpu::process_cpu_seconds(None)? - cpu_before;
    let out = ChildFigures {
        variant,
        requests: figures.requests,
        errors: figures.errors,
        throughput_per_s: figures.throughput_per_s,
        cpu_us_per_request: cpu_seconds * 1e6 / figures.requests.max(1) as f64,
    };
    if figures.errors > 0 {
        bail!("{}: {:?}", variant.name(), figures.errors_by_kind);
    }
    db.close().await?;
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

async fn run_child(
    url: &Url,
    variant: Variant,
    concurrency: u32,
    seconds: f64,
    pairs_file: &Path,
) -> anyhow::Result<ChildFigures> {
    let exe = std::env::current_exe().context("finding the harness's own executable")?;
    let output = tokio::process::Command::new(exe)
        .arg("overhead-child")
        .arg("--url")
        .arg(url.as_str())
        .arg("--variant")
        .arg(variant.name())
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--pairs")
        .arg(pairs_file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running overhead-child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "overhead-child {} failed ({}): {stdout}{}",
            variant.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .last()
        .context("overhead-child printed nothing")?;
    serde_json::from_str(line).context("reading overhead-child's figures")
}

/// Runs `rounds` × (plain, observed, capture only) children, the order rotating every round.
pub(crate) async fn run(
    url: &Url,
    pairs: &[(i64, i64)],
    concurrency: u32,
    rounds: usize,
    seconds: f64,
    script_dir: &Path,
) -> anyhow::Result<Overhead> {
    let pairs_file = script_dir.join("overhead-pairs.json");
    std::fs::write(&pairs_file, serde_json::to_string(pairs)?)?;
    let mut runs = Vec::new();
    let mut per_round = Vec::new();
    let mut capture_only_per_round = Vec::new();
    for round in 0..rounds {
        let mut order = [Variant::Plain, Variant::Observed, Variant::CaptureOnly];
        let variants = order.len();
        order.rotate_left(round % variants);
        let mut plain = 0.0;
        let mut observed = 0.0;
        let mut capture_only = 0.0;
        for variant in order {
            let figures = run_child(url, variant, concurrency, seconds, &pairs_file).await?;
            println!(
                "  round {round}: {:<8} {:>7.0} req/s × {concurrency}, {:.1} µs CPU/request",
                variant.name(),
                figures.throughput_per_s,
                figures.cpu_us_per_request
            );
            match variant {
                Variant::Plain => plain = figures.throughput_per_s,
                Variant::Observed => observed = figures.throughput_per_s,
                Variant::CaptureOnly => capture_only = figures.throughput_per_s,
            }
            runs.push(figures);
        }
        per_round.push(ratio(observed, plain));
        capture_only_per_round.push(ratio(capture_only, plain));
    }
    let of = |variant: Variant, value: fn(&ChildFigures) -> f64| -> f64 {
        median(
            &runs
                .iter()
                .filter(|r| r.variant == variant)
                .map(value)
                .collect::<Vec<_>>(),
        )
    };
    let overhead = Overhead {
        concurrency,
        rounds,
        seconds_per_run: seconds,
        plain_median_throughput_per_s: of(Variant::Plain, |r| r.throughput_per_s),
        observed_median_throughput_per_s: of(Variant::Observed, |r| r.throughput_per_s),
        capture_only_median_throughput_per_s: of(Variant::CaptureOnly, |r| r.throughput_per_s),
        plain_median_cpu_us_per_request: of(Variant::Plain, |r| r.cpu_us_per_request),
        observed_median_cpu_us_per_request: of(Variant::Observed, |r| r.cpu_us_per_request),
        capture_only_median_cpu_us_per_request: of(Variant::CaptureOnly, |r| r.cpu_us_per_request),
        capture_only_over_plain: median(&capture_only_per_round),
        capture_only_over_plain_per_round: capture_only_per_round,
        observed_over_plain: median(&per_round),
        observed_over_plain_per_round: per_round,
        runs,
    };
    println!(
        "  observed ÷ plain throughput: {:.3}, capture only ÷ plain {:.3} (medians of {rounds} rounds); CPU/request {:.1} µs and {:.1} µs against {:.1} µs",
        overhead.observed_over_plain,
        overhead.capture_only_over_plain,
        overhead.observed_median_cpu_us_per_request,
        overhead.capture_only_median_cpu_us_per_request,
        overhead.plain_median_cpu_us_per_request
    );
    Ok(overhead)
}
