//! Section 2 and 3: the last 10 messages of random conversations through the service layer
//! (in this process), through the HTTP API (the release `mercado` binary as a child process,
//! driven by `wrk`) and through pgbench (the same statements, no Rust at all), at each
//! concurrency, with the CPU time the application and PostgreSQL spend per request; and
//! single-task latency on the small database against the large one.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::Serialize;
use service::domain::chat::MessageLimit;
use sql_observe::{self as observe, Scope};
use url::Url;

use crate::{
    cpu::{CpuMeter, CpuPerRequest, PostgresProcesses},
    load::{LoadFigures, run_for},
    pgbench::{PgbenchResult, PgbenchRun},
    scale::Scale,
    server::MercadoServer,
    setup::{BenchDatabase, SeededIds},
    stats::{LatencySummary, Samples, ratio},
    wrk::{self, WrkReport},
};

/// The pgbench scripts, as committed under `scripts/pgbench`.
pub(crate) const LAST10_SCRIPT: &str = include_str!("../../scripts/pgbench/last10.sql");
pub(crate) const TAKE_STOCK_SCRIPT: &str = include_str!("../../scripts/pgbench/take-stock.sql");

/// How many (conversation, participant) pairs pgbench's last-10 run draws from, one script each.
const PGBENCH_PAIRS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Last10 {
    /// The statements the service sent for one call, as captured by `sql_observe`.
    pub(crate) statements: Vec<String>,
    /// The statement of `repo::products::take_stock`, captured the same way.
    pub(crate) take_stock_statements: Vec<String>,
    pub(crate) service: Vec<LoadFigures>,
    pub(crate) http: Vec<HttpRun>,
    /// CPU time per request of the application and of PostgreSQL, per path and load level.
    pub(crate) cpu: Vec<CpuRow>,
    pub(crate) pgbench_last10: Vec<PgbenchResult>,
    pub(crate) pgbench_take_stock: Vec<PgbenchResult>,
    /// Service throughput ÷ pgbench throughput at the same concurrency.
    pub(crate) service_fraction_of_pgbench: Vec<(u32, f64)>,
    pub(crate) http_fraction_of_pgbench: Vec<(u32, f64)>,
    pub(crate) small_vs_large: SmallVsLarge,
}

/// One wrk run against the `mercado` child.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpRun {
    /// wrk's connections (`-c`).
    pub(crate) concurrency: u32,
    /// wrk's threads (`-t`).
    pub(crate) threads: u32,
    /// Successful responses per second.
    pub(crate) throughput_per_s: f64,
    /// Non-2xx responses and socket errors.
    pub(crate) errors: u64,
    pub(crate) wrk: WrkReport,
}

/// One line of the CPU-per-request table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuRow {
    /// `service` (this process's CPU) or `HTTP` (the `mercado` child's).
    pub(crate) path: &'static str,
    pub(crate) concurrency: u32,
    pub(crate) throughput_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) cpu: CpuPerRequest,
}

/// What the HTTP runs need: the binary to start, and the load generator.
#[derive(Debug, Clone)]
pub(crate) struct HttpTools {
    pub(crate) mercado_bin: PathBuf,
    pub(crate) wrk: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SmallVsLarge {
    pub(crate) small_messages: u64,
    pub(crate) large_messages: u64,
    pub(crate) small: LatencySummary,
    pub(crate) large: LatencySummary,
    /// Large median ÷ small median.
    pub(crate) large_over_small_median: f64,
}

/// A participant of a conversation, with a token for the HTTP run.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    conversation_id: i64,
    user_id: i64,
    token: String,
}

/// One participant per conversation, for a random sample of the seeded conversations.
pub(crate) async fn sample_pairs(
    db: &BenchDatabase,
    ids: &SeededIds,
    count: usize,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let pairs: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT conversation_id, user_id FROM ( \
           SELECT DISTINCT ON (conversation_id) conversation_id, user_id \
           FROM conversation_participants WHERE conversation_id = ANY($1) \
           ORDER BY conversation_id, user_id) AS one_each \
         ORDER BY random() LIMIT $2",
    )
    .bind(&ids.conversations)
    .bind(i64::try_from(count)?)
    .fetch_all(db.pool())
    .await?;
    if pairs.is_empty() {
        anyhow::bail!("{}: no conversation has a participant", db.name);
    }
    Ok(pairs)
}

/// A caller for each pair, each user given a fresh API token.
pub(crate) async fn callers(
    db: &BenchDatabase,
    pairs: &[(i64, i64)],
) -> anyhow::Result<Arc<Vec<Caller>>> {
    let mut users: Vec<i64> = pairs.iter().map(|&(_, user)| user).collect();
    users.sort_unstable();
    users.dedup();
    let tokens = service::ops::users::issue_tokens(&db.plain, &users).await?;
    let mut callers = Vec::with_capacity(pairs.len());
    for &(conversation_id, user_id) in pairs {
        let token = tokens
            .iter()
            .find(|(user, _)| *user == user_id)
            .map(|(_, token)| token.clone())
            .with_context(|| format!("no token was issued for user {user_id}"))?;
        callers.push(Caller {
            conversation_id,
            user_id,
            token,
        });
    }
    Ok(Arc::new(callers))
}

pub(crate) async fn list_last10(
    db: &sea_orm::DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
) -> Result<(), String> {
    let limit = MessageLimit::parse(Some(10)).map_err(|e| e.to_string())?;
    service::ops::messages::list_messages(db, user_id, conversation_id, limit, None)
        .await
        .map(drop)
        .map_err(|error| format!("service: {error}"))
}

/// The statements one last-10 call sends, captured by the application's own capture layer.
async fn capture_statements(db: &BenchDatabase, pair: (i64, i64)) -> anyhow::Result<Vec<String>> {
    let (result, report) = observe::scope(
        Scope::command("bench last-10"),
        list_last10(&db.app, pair.1, pair.0),
    )
    .await;
    result.map_err(anyhow::Error::msg)?;
    Ok(report.statements.iter().map(|s| s.sql.clone()).collect())
}

async fn single_task(
    db: &BenchDatabase,
    pairs: &[(i64, i64)],
    iterations: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::with_capacity(iterations);
    for i in 0..iterations {
        let (conversation_id, user_id) = pairs[i % pairs.len()];
        let started = Instant::now();
        list_last10(&db.app, user_id, conversation_id)
            .await
            .map_err(anyhow::Error::msg)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

async fn small_vs_large(
    small: &BenchDatabase,
    small_ids: &SeededIds,
    large: &BenchDatabase,
    large_pairs: &[(i64, i64)],
    iterations: usize,
) -> anyhow::Result<SmallVsLarge> {
    let small_pairs = sample_pairs(small, small_ids, large_pairs.len()).await?;
    // Warm both pools and caches, then alternate blocks so that drift hits both alike.
    single_task(small, &small_pairs, iterations / 10 + 1).await?;
    single_task(large, large_pairs, iterations / 10 + 1).await?;
    let block = (iterations / 10).max(1);
    let mut small_samples = Samples::with_capacity(iterations);
    let mut large_samples = Samples::with_capacity(iterations);
    let mut done = 0;
    while done < iterations {
        let n = block.min(iterations - done);
        small_samples.extend(single_task(small, &small_pairs, n).await?);
        large_samples.extend(single_task(large, large_pairs, n).await?);
        done += n;
    }
    let small_summary = small_samples.summary();
    let large_summary = large_samples.summary();
    let figures = SmallVsLarge {
        small_messages: small.seed.messages,
        large_messages: large.seed.messages,
        small: small_summary,
        large: large_summary,
        large_over_small_median: ratio(large_summary.p50_us as f64, small_summary.p50_us as f64),
    };
    println!(
        "  single task: small p50 {} µs, large p50 {} µs ({:.2}×)",
        small_summary.p50_us, large_summary.p50_us, figures.large_over_small_median
    );
    Ok(figures)
}

fn print_load(label: &str, figures: &LoadFigures) {
    println!(
        "  {label} × {}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors",
        figures.concurrency,
        figures.throughput_per_s,
        figures.latency.p50_us,
        figures.latency.p99_us,
        figures.errors
    );
}

fn print_cpu(cpu: &CpuPerRequest) {
    match (cpu.postgres_us_per_request, cpu.app_over_postgres) {
        (Some(postgres), Some(over)) => println!(
            "    CPU per request: app {:.1} µs, PostgreSQL {postgres:.1} µs ({over:.2}×)",
            cpu.app_us_per_request
        ),
        _ => println!(
            "    CPU per request: app {:.1} µs, PostgreSQL not measured",
            cpu.app_us_per_request
        ),
    }
}

/// The service path's closed-loop load at one concurrency, for `duration`.
pub(crate) async fn service_load(
    db: &BenchDatabase,
    callers: &Arc<Vec<Caller>>,
    concurrency: u32,
    duration: Duration,
) -> anyhow::Result<LoadFigures> {
    let app = db.app.clone();
    let chosen = Arc::clone(callers);
    run_for(concurrency, duration, callers.len(), move |i| {
        let app = app.clone();
        let caller = chosen[i].clone();
        async move { list_last10(&app, caller.user_id, caller.conversation_id).await }
    })
    .await
}

async fn service_runs(
    db: &BenchDatabase,
    callers: &Arc<Vec<Caller>>,
    scale: &Scale,
    postgres: Option<&PostgresProcesses>,
) -> anyhow::Result<(Vec<LoadFigures>, Vec<CpuRow>)> {
    let mut runs = Vec::new();
    let mut cpu_rows = Vec::new();
    for &concurrency in &scale.last10_concurrency {
        let meter = CpuMeter::start(None, postgres)?;
        let figures = service_load(db, callers, concurrency, scale.last10_duration).await?;
        let cpu = meter.per_request(figures.requests)?;
        print_load("service", &figures);
        print_cpu(&cpu);
        cpu_rows.push(CpuRow {
            path: "service",
            concurrency,
            throughput_per_s: figures.throughput_per_s,
            p50_us: figures.latency.p50_us as f64,
            p99_us: figures.latency.p99_us as f64,
            cpu,
        });
        runs.push(figures);
    }
    Ok((runs, cpu_rows))
}

/// Writes the wrk script for `callers` into `dir`.
pub(crate) fn write_wrk_script(callers: &[Caller], dir: &Path) -> anyhow::Result<PathBuf> {
    let pairs: Vec<(i64, &str)> = callers
        .iter()
        .map(|c| (c.conversation_id, c.token.as_str()))
        .collect();
    let path = dir.join("last10.lua");
    std::fs::write(&path, wrk::last10_script(&pairs)?)?;
    Ok(path)
}

/// One wrk run against `server`, with the server's and PostgreSQL's CPU read around it.
pub(crate) async fn http_load(
    tools: &HttpTools,
    server: &MercadoServer,
    script: &Path,
    connections: u32,
    duration: Duration,
    postgres: Option<&PostgresProcesses>,
) -> anyhow::Result<(HttpRun, CpuPerRequest)> {
    let meter = CpuMeter::start(Some(server.pid), postgres)?;
    let report = wrk::run(&tools.wrk, script, &server.base_url, connections, duration).await?;
    let cpu = meter.per_request(report.requests)?;
    let run = HttpRun {
        concurrency: connections,
        threads: wrk::threads_for(connections),
        throughput_per_s: report.successes_per_s(),
        errors: report.errors(),
        wrk: report,
    };
    Ok((run, cpu))
}

async fn http_runs(
    db: &BenchDatabase,
    callers: &[Caller],
    scale: &Scale,
    tools: &HttpTools,
    postgres: Option<&PostgresProcesses>,
    work_dir: &Path,
) -> anyhow::Result<(Vec<HttpRun>, Vec<CpuRow>)> {
    let server = MercadoServer::start(&tools.mercado_bin, &db.url, work_dir).await?;
    println!(
        "  {} (pid {}) serving {} on {}; its log: {}",
        tools.mercado_bin.display(),
        server.pid,
        db.name,
        server.base_url,
        server.log.display()
    );
    let script = write_wrk_script(callers, work_dir)?;
    // Warm the child's pool (it opens connections as load needs them) and its caches.
    let max_concurrency = scale.last10_concurrency.iter().copied().max().unwrap_or(1);
    http_load(
        tools,
        &server,
        &script,
        max_concurrency,
        Duration::from_secs(1),
        None,
    )
    .await?;
    let mut runs = Vec::new();
    let mut cpu_rows = Vec::new();
    for &connections in &scale.last10_concurrency {
        let (run, cpu) = http_load(
            tools,
            &server,
            &script,
            connections,
            scale.last10_duration,
            postgres,
        )
        .await?;
        println!(
            "  HTTP (wrk -t{} -c{connections}): {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors ({} non-2xx, {} socket)",
            run.threads,
            run.throughput_per_s,
            run.wrk.latency_p50_us,
            run.wrk.latency_p99_us,
            run.errors,
            run.wrk.non_2xx,
            run.wrk.socket_errors
        );
        print_cpu(&cpu);
        cpu_rows.push(CpuRow {
            path: "HTTP",
            concurrency: connections,
            throughput_per_s: run.throughput_per_s,
            p50_us: run.wrk.latency_p50_us,
            p99_us: run.wrk.latency_p99_us,
            cpu,
        });
        runs.push(run);
    }
    drop(server);
    Ok((runs, cpu_rows))
}

/// `sql` with every `$n` and every pgbench `:name` replaced by `?`, so that a captured
/// statement and a script's line compare equal when only their placeholders differ.
fn with_anonymous_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let starts_placeholder = match (c, chars.peek()) {
            ('$', Some(d)) => d.is_ascii_digit(),
            (':', Some(d)) => d.is_ascii_lowercase(),
            _ => false,
        };
        if !starts_placeholder {
            out.push(c);
            continue;
        }
        while chars
            .peek()
            .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
        {
            chars.next();
        }
        out.push('?');
    }
    out
}

/// The SQL lines of a pgbench script (not comments, not meta-commands), without their `;`.
fn script_statements(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("--") && !line.starts_with('\\'))
        .map(|line| with_anonymous_placeholders(line.trim_end_matches(';')))
        .collect()
}

/// Fails when a script no longer holds exactly the statements the service sends.
fn check_script(name: &str, script: &str, captured: &[String]) -> anyhow::Result<()> {
    let expected: Vec<String> = captured
        .iter()
        .map(|s| with_anonymous_placeholders(s))
        .collect();
    if script_statements(script) != expected {
        anyhow::bail!(
            "scripts/pgbench/{name} no longer matches the statements the service sends; update it to:\n{}",
            captured.join(";\n")
        );
    }
    Ok(())
}

/// The guarded stock update `place_order` sends, captured inside a transaction rolled back.
async fn capture_take_stock(db: &BenchDatabase, product_id: i64) -> anyhow::Result<Vec<String>> {
    use sea_orm::TransactionTrait;
    let txn = db.app.begin().await?;
    let (taken, report) = observe::scope(
        Scope::command("bench take-stock"),
        service::repo::products::take_stock(&txn, product_id, 1),
    )
    .await;
    taken?;
    txn.rollback().await?;
    Ok(report.statements.iter().map(|s| s.sql.clone()).collect())
}

/// The id range of `ids` (pgbench draws uniformly from it), with a warning when it has gaps.
fn id_range(what: &str, ids: &[i64]) -> (i64, i64) {
    let min = ids.iter().copied().min().unwrap_or(1);
    let max = ids.iter().copied().max().unwrap_or(1);
    if (max - min + 1) as usize != ids.len() {
        println!(
            "  warning: seeded {what} ids are not contiguous; pgbench draws some ids outside the seed"
        );
    }
    (min, max)
}

async fn pgbench_runs(
    pgbench: &Path,
    server_url: &Url,
    large: &BenchDatabase,
    ids: &SeededIds,
    scale: &Scale,
    script_dir: &Path,
) -> anyhow::Result<(Vec<PgbenchResult>, Vec<PgbenchResult>)> {
    // One copy of last10.sql per sampled (conversation, participant) pair: pgbench cannot look
    // a participant up without a statement the service does not send. pgbench takes at most
    // 128 scripts.
    let pairs = sample_pairs(large, ids, PGBENCH_PAIRS).await?;
    let mut last10_paths = Vec::with_capacity(pairs.len());
    for (index, (conversation_id, user_id)) in pairs.iter().enumerate() {
        let path = script_dir.join(format!("last10-{index}.sql"));
        std::fs::write(
            &path,
            format!("\\set cid {conversation_id}\n\\set uid {user_id}\n{LAST10_SCRIPT}"),
        )?;
        last10_paths.push(path);
    }
    let take_stock_paths = [script_dir.join("take-stock.sql")];
    std::fs::write(&take_stock_paths[0], TAKE_STOCK_SCRIPT)?;
    let (pid_min, pid_max) = id_range("product", &ids.products);
    let mut last10 = Vec::new();
    let mut take_stock = Vec::new();
    for &clients in &scale.last10_concurrency {
        let run = PgbenchRun {
            pgbench,
            server_url,
            database: &large.name,
            scripts: &last10_paths,
            clients,
            seconds: scale.pgbench_seconds(),
            variables: Vec::new(),
        };
        let result = run.run().await.context("pgbench last10")?;
        println!(
            "  pgbench last10 × {clients}: {:.0} tps, {:.3} ms average",
            result.tps, result.latency_average_ms
        );
        last10.push(result);
        let run = PgbenchRun {
            scripts: &take_stock_paths,
            variables: vec![("pid_min", pid_min), ("pid_max", pid_max)],
            ..run
        };
        let result = run.run().await.context("pgbench take-stock")?;
        println!(
            "  pgbench take-stock × {clients}: {:.0} tps, {:.3} ms average",
            result.tps, result.latency_average_ms
        );
        take_stock.push(result);
    }
    Ok((last10, take_stock))
}

/// Each (concurrency, throughput) as a fraction of pgbench's at the same concurrency.
fn fractions(runs: impl Iterator<Item = (u32, f64)>, pgbench: &[PgbenchResult]) -> Vec<(u32, f64)> {
    runs.filter_map(|(concurrency, throughput)| {
        pgbench
            .iter()
            .find(|p| p.clients == concurrency)
            .map(|p| (concurrency, ratio(throughput, p.tps)))
    })
    .collect()
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    small: &BenchDatabase,
    small_ids: &SeededIds,
    large: &BenchDatabase,
    ids: &SeededIds,
    scale: &Scale,
    pgbench: &Path,
    server_url: &Url,
    script_dir: &Path,
    tools: &HttpTools,
    postgres: Option<&PostgresProcesses>,
) -> anyhow::Result<Last10> {
    let pairs = sample_pairs(large, ids, scale.last10_callers).await?;
    let statements = capture_statements(large, pairs[0]).await?;
    check_script("last10.sql", LAST10_SCRIPT, &statements)?;
    let product = *ids.products.first().context("the seed has no products")?;
    let take_stock_statements = capture_take_stock(large, product).await?;
    check_script("take-stock.sql", TAKE_STOCK_SCRIPT, &take_stock_statements)?;
    println!("  scripts/pgbench/*.sql hold exactly the statements the service sends");
    let callers = callers(large, &pairs).await?;
    // Warm the pool and the server's caches before anything is timed.
    single_task(large, &pairs, pairs.len().max(100)).await?;

    let (service, service_cpu) = service_runs(large, &callers, scale, postgres).await?;
    let (http, http_cpu) = http_runs(large, &callers, scale, tools, postgres, script_dir).await?;
    let (pgbench_last10, pgbench_take_stock) =
        pgbench_runs(pgbench, server_url, large, ids, scale, script_dir).await?;
    let small_vs_large = small_vs_large(
        small,
        small_ids,
        large,
        &pairs,
        scale.small_vs_large_iterations,
    )
    .await?;
    // A pause between sections lets the server settle (autovacuum, checkpoints of pgbench's writes).
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Last10 {
        statements,
        take_stock_statements,
        service_fraction_of_pgbench: fractions(
            service.iter().map(|r| (r.concurrency, r.throughput_per_s)),
            &pgbench_last10,
        ),
        http_fraction_of_pgbench: fractions(
            http.iter().map(|r| (r.concurrency, r.throughput_per_s)),
            &pgbench_last10,
        ),
        cpu: service_cpu.into_iter().chain(http_cpu).collect(),
        service,
        http,
        pgbench_last10,
        pgbench_take_stock,
        small_vs_large,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_and_named_placeholders_compare_equal() {
        assert_eq!(
            with_anonymous_placeholders("WHERE a = $1 AND b = $12 LIMIT $3"),
            with_anonymous_placeholders("WHERE a = :cid AND b = :uid_max LIMIT :one")
        );
    }

    #[test]
    fn the_committed_scripts_hold_only_their_statements() {
        // The page, with the participant check inside it: one statement since the check moved
        // into the page query.
        assert_eq!(script_statements(LAST10_SCRIPT).len(), 1);
        assert_eq!(script_statements(TAKE_STOCK_SCRIPT).len(), 1);
    }
}
