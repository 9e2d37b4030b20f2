//! Section 2 and 3: the last 10 messages of random conversations through the service layer,
//! through the HTTP API and through pgbench (the same statements, no Rust at all), at each
//! concurrency; and single-task latency on the small database against the large one.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use mercado::{
    settings::Settings,
    startup::{Application, DemoData, ServeOptions},
};
use serde::Serialize;
use service::domain::chat::MessageLimit;
use sql_observe::{self as observe, Scope};
use url::Url;

use crate::{
    load::{LoadFigures, run_for},
    pgbench::{PgbenchResult, PgbenchRun},
    scale::Scale,
    setup::{BenchDatabase, SeededIds},
    stats::{LatencySummary, Samples, ratio},
};

/// The pgbench scripts, as committed under `scripts/pgbench`.
pub(crate) const LAST10_SCRIPT: &str = include_str!("../../scripts/pgbench/last10.sql");
pub(crate) const TAKE_STOCK_SCRIPT: &str = include_str!("../../scripts/pgbench/take-stock.sql");

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Last10 {
    /// The statements the service sent for one call, as captured by `sql_observe`.
    pub(crate) statements: Vec<String>,
    /// The statement of `repo::products::take_stock`, captured the same way.
    pub(crate) take_stock_statements: Vec<String>,
    pub(crate) service: Vec<LoadFigures>,
    pub(crate) http: Vec<LoadFigures>,
    pub(crate) pgbench_last10: Vec<PgbenchResult>,
    pub(crate) pgbench_take_stock: Vec<PgbenchResult>,
    /// Service throughput ÷ pgbench throughput at the same concurrency.
    pub(crate) service_fraction_of_pgbench: Vec<(u32, f64)>,
    pub(crate) http_fraction_of_pgbench: Vec<(u32, f64)>,
    pub(crate) small_vs_large: SmallVsLarge,
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
struct Caller {
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

async fn service_runs(
    db: &BenchDatabase,
    callers: &Arc<Vec<Caller>>,
    scale: &Scale,
) -> anyhow::Result<Vec<LoadFigures>> {
    let mut runs = Vec::new();
    for &concurrency in &scale.last10_concurrency {
        let app = db.app.clone();
        let chosen = Arc::clone(callers);
        let figures = run_for(
            concurrency,
            scale.last10_duration,
            callers.len(),
            move |i| {
                let app = app.clone();
                let caller = chosen[i].clone();
                async move { list_last10(&app, caller.user_id, caller.conversation_id).await }
            },
        )
        .await?;
        print_load("service", &figures);
        runs.push(figures);
    }
    Ok(runs)
}

async fn http_runs(
    db: &BenchDatabase,
    callers: &Arc<Vec<Caller>>,
    scale: &Scale,
) -> anyhow::Result<Vec<LoadFigures>> {
    // The application as the binary builds it (`mercado::startup::Application`: its own pool
    // with the capture installed, default pool and API settings) on a free port, over the
    // database seeded already.
    let mut settings = Settings::default();
    settings.database.url = db.url.as_str().into();
    settings.database.application_name = "mercado-bench".to_owned();
    settings.server.listen_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let options = ServeOptions {
        demo_data: DemoData::SkipQuietly,
        ..ServeOptions::default()
    };
    let application = Application::build(settings, options).await?;
    let address = application.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let max_concurrency = scale.last10_concurrency.iter().copied().max().unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(max_concurrency as usize * 2)
        .build()?;
    let base = Arc::new(format!("http://{address}"));
    let mut runs = Vec::new();
    for &concurrency in &scale.last10_concurrency {
        let chosen = Arc::clone(callers);
        let client = client.clone();
        let base = Arc::clone(&base);
        let figures = run_for(
            concurrency,
            scale.last10_duration,
            callers.len(),
            move |i| {
                let caller = chosen[i].clone();
                let request = client
                    .get(format!(
                        "{base}/conversations/{}/messages?limit=10",
                        caller.conversation_id
                    ))
                    .bearer_auth(caller.token);
                async move {
                    let response = request.send().await.map_err(|e| format!("http: {e}"))?;
                    let status = response.status();
                    // The body is read whole, as a client would.
                    response
                        .bytes()
                        .await
                        .map_err(|e| format!("http body: {e}"))?;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("http status {status}"))
                    }
                }
            },
        )
        .await?;
        print_load("HTTP", &figures);
        runs.push(figures);
    }
    let _ = stop.send(());
    server.await??;
    Ok(runs)
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
    let last10_path = script_dir.join("last10.sql");
    let take_stock_path = script_dir.join("take-stock.sql");
    std::fs::write(&last10_path, LAST10_SCRIPT)?;
    std::fs::write(&take_stock_path, TAKE_STOCK_SCRIPT)?;
    let (cid_min, cid_max) = id_range("conversation", &ids.conversations);
    let (uid_min, uid_max) = id_range("user", &ids.users);
    let (pid_min, pid_max) = id_range("product", &ids.products);
    let mut last10 = Vec::new();
    let mut take_stock = Vec::new();
    for &clients in &scale.last10_concurrency {
        let run = PgbenchRun {
            pgbench,
            server_url,
            database: &large.name,
            script: &last10_path,
            clients,
            seconds: scale.pgbench_seconds(),
            variables: vec![
                ("cid_min", cid_min),
                ("cid_max", cid_max),
                ("uid_min", uid_min),
                ("uid_max", uid_max),
            ],
        };
        let result = run.run().await.context("pgbench last10")?;
        println!(
            "  pgbench last10 × {clients}: {:.0} tps, {:.3} ms average",
            result.tps, result.latency_average_ms
        );
        last10.push(result);
        let run = PgbenchRun {
            script: &take_stock_path,
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

fn fractions(runs: &[LoadFigures], pgbench: &[PgbenchResult]) -> Vec<(u32, f64)> {
    runs.iter()
        .filter_map(|run| {
            pgbench
                .iter()
                .find(|p| p.clients == run.concurrency)
                .map(|p| (run.concurrency, ratio(run.throughput_per_s, p.tps)))
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
) -> anyhow::Result<Last10> {
    let pairs = sample_pairs(large, ids, scale.last10_callers).await?;
    let statements = capture_statements(large, pairs[0]).await?;
    check_script("last10.sql", LAST10_SCRIPT, &statements)?;
    let product = *ids.products.first().context("the seed has no products")?;
    let take_stock_statements = capture_take_stock(large, product).await?;
    check_script("take-stock.sql", TAKE_STOCK_SCRIPT, &take_stock_statements)?;
    println!("  scripts/pgbench/*.sql hold exactly the statements the service sends");
    let mut users: Vec<i64> = pairs.iter().map(|&(_, user)| user).collect();
    users.sort_unstable();
    users.dedup();
    let tokens = service::ops::users::issue_tokens(&large.plain, &users).await?;
    let callers: Arc<Vec<Caller>> = Arc::new(
        pairs
            .iter()
            .map(|&(conversation_id, user_id)| Caller {
                conversation_id,
                user_id,
                token: tokens
                    .iter()
                    .find(|(user, _)| *user == user_id)
                    .map(|(_, token)| token.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    );
    // Warm the pool and the server's caches before anything is timed.
    single_task(large, &pairs, pairs.len().max(100)).await?;

    let service = service_runs(large, &callers, scale).await?;
    let http = http_runs(large, &callers, scale).await?;
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
        service_fraction_of_pgbench: fractions(&service, &pgbench_last10),
        http_fraction_of_pgbench: fractions(&http, &pgbench_last10),
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
        assert_eq!(script_statements(LAST10_SCRIPT).len(), 2);
        assert_eq!(script_statements(TAKE_STOCK_SCRIPT).len(), 1);
    }
}
