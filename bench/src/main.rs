//! `mercado-bench`: Mercado's benchmark harness. In one run on a PostgreSQL server it creates,
//! migrates and seeds three databases (small, large, and one for the loading fixtures), then measures the ORM against raw sqlx on the same pool,
//! the last-10-messages read through the service layer, the HTTP API (the release `mercado`
//! binary under `wrk`) and pgbench at several concurrencies, with the CPU time per request of
//! the application and of PostgreSQL, what the SQL capture and row counting cost,
//! lazy/joined/select-in loading, `place_order` under contention, the streaming
//! export's speed and memory, and the bulk-insert paths; it writes `results.json`, two SVG
//! charts and the generated section of `docs/benchmarks.md`.
//!
//! It may depend on every crate of the workspace (`service`, `api`, `entity`, `migration`) and
//! calls them as the binary does; nothing depends on it. Whatever it needs that the service
//! lacks (fixtures, top-ups, tokens for existing users) is written here, with bound values only.

mod bulk;
mod capture;
mod charts;
mod cpu;
mod export;
mod fixtures;
mod last10;
mod load;
mod loading;
mod machine;
mod orders;
mod orm_vs_raw;
mod overhead;
mod perf;
mod pgbench;
mod report;
mod scale;
mod server;
mod setup;
mod stats;
mod wrk;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use url::Url;

use crate::{
    cpu::PostgresProcesses,
    last10::HttpTools,
    report::{Results, Seeds},
    scale::{Scale, ScaleName},
    setup::{LARGE_SUFFIX, LOADING_SUFFIX, SMALL_SUFFIX, database_name},
};

#[derive(Debug, Parser)]
#[command(
    name = "mercado-bench",
    about = "Mercado's benchmark harness (PostgreSQL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every measurement and writes the results.
    Run(RunArgs),
    /// Measures what the SQL capture and the N+1 detector cost the last-10 service call (on its
    /// own database, `<prefix>_capture`) and writes the figures as JSON.
    CaptureCost(CaptureCostArgs),
    /// Runs only the last-10 load of one path (service or HTTP) on the large database, with its
    /// CPU per request; with `--perf-record`, under `perf record` (see `scripts/flamegraph`).
    Load(LoadArgs),
    /// Splits the tuned ORM's time over raw sqlx in `last_messages` and `order_lines` into
    /// statement building and SeaORM's execution, on the large database; writes the figures as
    /// JSON.
    OrmGap(OrmGapArgs),
    /// Internal: one variant of the capture-and-row-count cost; prints its figures as JSON.
    #[command(hide = true)]
    OverheadChild {
        #[arg(long)]
        url: Url,
        #[arg(long, value_enum)]
        variant: overhead::Variant,
        #[arg(long)]
        concurrency: u32,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        pairs: PathBuf,
    },
    /// Internal: exports every message to a sink and prints its memory figures as JSON.
    #[command(hide = true)]
    ExportChild,
    /// Drops the two databases of a prefix (for tests that use a random one).
    #[command(hide = true)]
    DropDatabases {
        #[arg(long)]
        server_url: Url,
        #[arg(long)]
        database_prefix: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The PostgreSQL server, without a database name.
    #[arg(long)]
    server_url: Url,
    #[arg(long, value_enum, default_value = "quick")]
    scale: ScaleName,
    /// Where results.json and the charts go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// The Markdown file whose generated section is rewritten; `<out>.md` by default.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Seed the databases again even when a completed seed of the same sizes exists.
    #[arg(long)]
    reseed: bool,
    /// Run in a debug build anyway (its figures mean nothing; for tests).
    #[arg(long)]
    allow_debug: bool,
    /// Prefix of the databases' names (`<prefix>_small`, `<prefix>_large`).
    #[arg(long, default_value = setup::DEFAULT_DATABASE_PREFIX)]
    database_prefix: String,
    /// The pgbench executable.
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// The `mercado` binary the HTTP runs start; `mercado` beside this executable by default
    /// (`target/release/mercado`: `cargo build --release -p mercado`).
    #[arg(long)]
    mercado_bin: Option<PathBuf>,
    /// The HTTP load generator (Debian package `wrk`).
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
}

impl HttpArgs {
    fn tools(&self) -> anyhow::Result<HttpTools> {
        Ok(HttpTools {
            mercado_bin: match &self.mercado_bin {
                Some(path) => path.clone(),
                None => server::default_binary()?,
            },
            wrk: self.wrk.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoadPath {
    Service,
    Http,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The PostgreSQL server, without a database name.
    #[arg(long)]
    server_url: Url,
    #[arg(long, value_enum)]
    path: LoadPath,
    /// Tasks (service) or wrk connections (HTTP).
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// How long the load lasts: `10s`, `500ms` or seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// The scale whose large database is loaded (seeded first if it is missing).
    #[arg(long, value_enum, default_value = "full")]
    scale: ScaleName,
    #[arg(long, default_value = setup::DEFAULT_DATABASE_PREFIX)]
    database_prefix: String,
    /// Record the loaded process (this one for `service`, the `mercado` child for `http`)
    /// with `perf record -F 499 -g --call-graph <perf-call-graph> -o FILE` during the load.
    #[arg(long)]
    perf_record: Option<PathBuf>,
    #[arg(long, default_value = "dwarf")]
    perf_call_graph: String,
    #[command(flatten)]
    http: HttpArgs,
    #[arg(long)]
    allow_debug: bool,
}

/// `10s`, `1.5s`, `500ms` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| format!("{text:?} is not a duration (10s, 500ms)"))
}

#[derive(Debug, clap::Args)]
struct CaptureCostArgs {
    /// The PostgreSQL server, without a database name.
    #[arg(long)]
    server_url: Url,
    #[arg(long, default_value = setup::DEFAULT_DATABASE_PREFIX)]
    database_prefix: String,
    /// Tasks of the closed-loop load.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Rounds; each runs every variant once, in a rotating order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of load per variant and round.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Single-task calls per variant and round.
    #[arg(long, default_value_t = 2_000)]
    single_task_iterations: usize,
    /// Where the JSON goes.
    #[arg(long, default_value = "docs/benchmarks/capture-cost.json")]
    out: PathBuf,
    #[arg(long)]
    allow_debug: bool,
}

async fn capture_cost(args: CaptureCostArgs) -> anyhow::Result<()> {
    refuse_a_debug_build(args.allow_debug, "capture-cost")?;
    setup::check_prefix(&args.database_prefix)?;
    let name = database_name(&args.database_prefix, "capture");
    let sizes = Scale::of(ScaleName::Quick).small_seed;
    let db = setup::prepare(&args.server_url, &name, sizes, false).await?;
    section("SQL capture cost: last 10 messages through the service");
    let cost = capture::run(
        &db,
        args.concurrency,
        args.rounds,
        args.seconds,
        args.single_task_iterations,
    )
    .await?;
    std::fs::write(&args.out, serde_json::to_string_pretty(&cost)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("  written to {}", args.out.display());
    Ok(())
}

#[derive(Debug, clap::Args)]
struct OrmGapArgs {
    /// The PostgreSQL server, without a database name.
    #[arg(long)]
    server_url: Url,
    /// The scale whose large database is read (seeded first if it is missing).
    #[arg(long, value_enum, default_value = "full")]
    scale: ScaleName,
    #[arg(long, default_value = setup::DEFAULT_DATABASE_PREFIX)]
    database_prefix: String,
    /// Calls of each side, interleaved.
    #[arg(long, default_value_t = 5_000)]
    iterations: usize,
    /// Where the JSON goes.
    #[arg(long, default_value = "docs/benchmarks/orm-gap.json")]
    out: PathBuf,
    #[arg(long)]
    allow_debug: bool,
}

async fn orm_gap(args: OrmGapArgs) -> anyhow::Result<()> {
    refuse_a_debug_build(args.allow_debug, "orm-gap")?;
    setup::check_prefix(&args.database_prefix)?;
    let scale = Scale::of(args.scale);
    let name = database_name(&args.database_prefix, LARGE_SUFFIX);
    let db = setup::prepare(&args.server_url, &name, scale.large_seed, false).await?;
    let ids = setup::seeded_ids(&db).await?;
    section("The tuned ORM's time over raw sqlx: building the statement, and running it");
    let gap = orm_vs_raw::gap(&db, &ids, args.iterations, scale.compare_warmup).await?;
    std::fs::write(&args.out, serde_json::to_string_pretty(&gap)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("  written to {}", args.out.display());
    db.plain.close_by_ref().await?;
    Ok(())
}

/// A debug build's figures mean nothing: a subcommand that measures refuses one unless allowed.
fn refuse_a_debug_build(allow_debug: bool, subcommand: &str) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !allow_debug {
        bail!(
            "this is a debug build: its figures would be meaningless. Run it with \
             `cargo run --release -p mercado-bench -- {subcommand} …` (or pass --allow-debug to \
             run anyway)"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args).await,
        Command::CaptureCost(args) => capture_cost(args).await,
        Command::Load(args) => load(args).await,
        Command::OrmGap(args) => orm_gap(args).await,
        Command::OverheadChild {
            url,
            variant,
            concurrency,
            seconds,
            pairs,
        } => overhead::child(&url, variant, concurrency, seconds, &pairs).await,
        Command::ExportChild => export::child().await,
        Command::DropDatabases {
            server_url,
            database_prefix,
        } => {
            setup::check_prefix(&database_prefix)?;
            for suffix in [SMALL_SUFFIX, LARGE_SUFFIX, LOADING_SUFFIX] {
                setup::drop_database(&server_url, &database_name(&database_prefix, suffix)).await?;
            }
            Ok(())
        }
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    refuse_a_debug_build(args.allow_debug, "run")?;
    setup::check_prefix(&args.database_prefix)?;
    let scale = Scale::of(args.scale);
    let doc = args
        .doc
        .clone()
        .unwrap_or_else(|| args.out.with_extension("md"));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let script_dir = std::env::temp_dir().join(format!("mercado-bench-{}", std::process::id()));
    std::fs::create_dir_all(&script_dir)?;

    section("databases");
    let small_name = database_name(&args.database_prefix, SMALL_SUFFIX);
    let large_name = database_name(&args.database_prefix, LARGE_SUFFIX);
    let small =
        setup::prepare(&args.server_url, &small_name, scale.small_seed, args.reseed).await?;
    let large =
        setup::prepare(&args.server_url, &large_name, scale.large_seed, args.reseed).await?;
    let loading_db = setup::prepare(
        &args.server_url,
        &database_name(&args.database_prefix, LOADING_SUFFIX),
        scale.small_seed,
        args.reseed,
    )
    .await?;
    let small_ids = setup::seeded_ids(&small).await?;
    let large_ids = setup::seeded_ids(&large).await?;
    let loading_ids = setup::seeded_ids(&loading_db).await?;
    let tools = args.http.tools()?;
    let postgres = match PostgresProcesses::find(large.pool()).await {
        Ok(processes) => {
            println!(
                "  PostgreSQL's CPU is read from the postmaster {} and its children",
                processes.postmaster
            );
            Some(processes)
        }
        Err(error) => {
            println!(
                "  PostgreSQL's CPU cannot be read from here, so it is not reported: {error:#}"
            );
            None
        }
    };
    let machine = machine::describe(large.pool()).await?;
    println!(
        "  machine: {} ({} cores), PostgreSQL {}, {} build, scale {:?}",
        machine.cpu_model,
        machine.cores,
        machine.postgres_version,
        machine.build_profile,
        scale.name
    );

    section("4. loading fixtures");
    let parents = scale.loading_parents.iter().copied().max().unwrap_or(0);
    let fixture = fixtures::loading_fixture(
        &loading_db,
        &loading_ids,
        parents,
        scale.loading_few_children,
        scale.loading_many_children,
    )
    .await?;

    section("1. ORM against raw sqlx");
    let orm_vs_raw = orm_vs_raw::run(&large, &large_ids, &scale).await?;

    section("2-3. last 10 messages: service, HTTP, pgbench");
    let last10 = last10::run(
        &small,
        &small_ids,
        &large,
        &large_ids,
        &scale,
        &args.pgbench,
        &args.server_url,
        &script_dir,
        &tools,
        postgres.as_ref(),
    )
    .await?;

    section("2b. what the SQL capture and row counting cost the service call (child processes)");
    let overhead_pairs = last10::sample_pairs(&large, &large_ids, scale.last10_callers).await?;
    let overhead = overhead::run(
        &large.url,
        &overhead_pairs,
        8,
        scale.overhead_rounds,
        scale.overhead_seconds,
        &script_dir,
    )
    .await?;

    section("4. lazy, joined and select-in loading");
    let loading = loading::run(&loading_db, &fixture, &scale).await?;

    section("5. place_order under load");
    let orders = orders::run(&large, &large_ids, &scale).await?;

    section("6. export (child process)");
    let export = export::run(&large.url).await?;

    section("7. bulk inserts");
    let bulk = bulk::run(&large, &large_ids, &scale).await?;

    section("results");
    let targets = report::targets(&orm_vs_raw, &last10, &overhead, &loading, &orders, &export);
    for target in &targets {
        let verdict = match target.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        println!(
            "  {verdict:>12}: {} ({})",
            target.target,
            target.measured.as_deref().unwrap_or("-")
        );
    }
    let results = Results {
        machine,
        scale,
        seeds: Seeds {
            small: small.seed.clone(),
            large: large.seed.clone(),
        },
        orm_vs_raw,
        last10,
        overhead,
        loading,
        orders,
        export,
        bulk,
        targets,
    };
    report::write_json(&results, &args.out.join("results.json"))?;
    charts::loading(&results.loading, &args.out.join("loading.svg"))?;
    charts::throughput(&results.last10, &args.out.join("throughput.svg"))?;
    let chart_link = chart_link(&doc, &args.out);
    report::write_markdown(&results, &doc, &chart_link)?;
    let _ = std::fs::remove_dir_all(&script_dir);
    small.plain.close_by_ref().await?;
    large.plain.close_by_ref().await?;
    loading_db.plain.close_by_ref().await?;
    println!(
        "  wrote {}, loading.svg, throughput.svg and {}",
        args.out.join("results.json").display(),
        doc.display()
    );
    Ok(())
}

/// `mercado-bench load`: one path's last-10 load alone, for a profiler.
async fn load(args: LoadArgs) -> anyhow::Result<()> {
    refuse_a_debug_build(args.allow_debug, "load")?;
    setup::check_prefix(&args.database_prefix)?;
    let scale = Scale::of(args.scale);
    let name = database_name(&args.database_prefix, LARGE_SUFFIX);
    let db = setup::prepare(&args.server_url, &name, scale.large_seed, false).await?;
    let ids = setup::seeded_ids(&db).await?;
    let postgres = PostgresProcesses::find(db.pool())
        .await
        .map_err(|error| println!("  PostgreSQL's CPU is not reported: {error:#}"))
        .ok();
    let pairs = last10::sample_pairs(&db, &ids, scale.last10_callers).await?;
    let callers = last10::callers(&db, &pairs).await?;
    let work_dir = std::env::temp_dir().join(format!("mercado-bench-load-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let cpu = match args.path {
        LoadPath::Service => {
            // Warm up for a second, then record the timed load only.
            last10::service_load(&db, &callers, args.concurrency, Duration::from_secs(1)).await?;
            let perf = perf::Recording::start(
                args.perf_record.as_deref(),
                &args.perf_call_graph,
                std::process::id(),
            )
            .await?;
            let meter = cpu::CpuMeter::start(None, postgres.as_ref())?;
            let figures =
                last10::service_load(&db, &callers, args.concurrency, args.duration).await?;
            let cpu = meter.per_request(figures.requests)?;
            perf.stop()?;
            println!(
                "service × {}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors",
                args.concurrency,
                figures.throughput_per_s,
                figures.latency.p50_us,
                figures.latency.p99_us,
                figures.errors
            );
            cpu
        }
        LoadPath::Http => {
            let tools = args.http.tools()?;
            let server =
                server::MercadoServer::start(&tools.mercado_bin, &db.url, &work_dir).await?;
            let script = last10::write_wrk_script(&callers, &work_dir)?;
            last10::http_load(
                &tools,
                &server,
                &script,
                args.concurrency,
                Duration::from_secs(1),
                None,
            )
            .await?;
            let perf = perf::Recording::start(
                args.perf_record.as_deref(),
                &args.perf_call_graph,
                server.pid,
            )
            .await?;
            let (run, cpu) = last10::http_load(
                &tools,
                &server,
                &script,
                args.concurrency,
                args.duration,
                postgres.as_ref(),
            )
            .await?;
            perf.stop()?;
            println!(
                "HTTP (wrk -t{} -c{}): {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
                run.threads,
                run.concurrency,
                run.throughput_per_s,
                run.wrk.latency_p50_us,
                run.wrk.latency_p99_us,
                run.errors
            );
            cpu
        }
    };
    let _ = std::fs::remove_dir_all(&work_dir);
    match cpu.postgres_us_per_request {
        Some(postgres) => println!(
            "CPU per request: app {:.1} µs, PostgreSQL {postgres:.1} µs",
            cpu.app_us_per_request
        ),
        None => println!("CPU per request: app {:.1} µs", cpu.app_us_per_request),
    }
    db.plain.close_by_ref().await?;
    Ok(())
}

/// The charts' directory as the Markdown file links it: relative when the file sits beside it.
fn chart_link(doc: &std::path::Path, out: &std::path::Path) -> String {
    match (doc.parent(), out.parent(), out.file_name()) {
        (Some(doc_dir), Some(out_dir), Some(name)) if doc_dir == out_dir => {
            name.to_string_lossy().into_owned()
        }
        _ => out.display().to_string(),
    }
}
