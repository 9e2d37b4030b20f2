//! `mercado seed` and `mercado export`: filling a database with a sized data set, and streaming
//! its messages out as NDJSON. The work is done by `mercado_lab::seed` and `service::export`; this
//! module only reports progress and results.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mercado::schema::{SchemaPolicy, ensure_schema};
use mercado_lab::seed::{SeedSizes, seed};
use sea_orm::DatabaseConnection;
use service::export::{ExportScope, export_messages};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    #[arg(long, default_value_t = 100)]
    users: u64,
    #[arg(long, default_value_t = 200)]
    conversations: u64,
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    #[arg(long, default_value_t = 100)]
    products: u64,
    /// Makes the generated content reproducible.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only this conversation's messages (default: all messages).
    #[arg(long)]
    conversation: Option<i64>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) async fn run_seed(db: &DatabaseConnection, args: SeedArgs) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Data).await?;
    let sizes = SeedSizes {
        users: args.users,
        conversations: args.conversations,
        messages: args.messages,
        products: args.products,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({per_sec})")
            .context("the progress bar template")?
            .progress_chars("=> "),
    );
    let report = seed(db, sizes, args.seed, |progress| {
        if bar.message() != progress.table {
            bar.reset();
            bar.set_message(progress.table);
            bar.set_length(progress.total);
        }
        bar.set_position(progress.done);
    })
    .await?;
    bar.finish_and_clear();
    for table in &report.tables {
        println!(
            "{:>30}: {:>9} rows in {:>8.2?} ({:>9.0} rows/s)",
            table.table,
            table.rows,
            table.elapsed,
            table.rows_per_second()
        );
    }
    println!(
        "{:>30}: {:>9} rows in {:>8.2?} ({:>9.0} rows/s), tag {}",
        "total",
        report.rows(),
        report.elapsed,
        report.rows_per_second(),
        report.tag
    );
    Ok(())
}

pub(crate) async fn run_export(db: &DatabaseConnection, args: ExportArgs) -> anyhow::Result<()> {
    ensure_schema(db, SchemaPolicy::Data).await?;
    let scope = args
        .conversation
        .map_or(ExportScope::All, ExportScope::Conversation);
    let rows = match args.output {
        Some(path) => {
            let file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            export_to(db, scope, file).await?
        }
        None => export_to(db, scope, tokio::io::stdout()).await?,
    };
    tracing::info!(rows, "export finished");
    Ok(())
}

async fn export_to(
    db: &DatabaseConnection,
    scope: ExportScope,
    sink: impl AsyncWrite + Unpin,
) -> anyhow::Result<u64> {
    let mut writer = BufWriter::new(sink);
    let rows = export_messages(db, scope, &mut writer).await?;
    writer.flush().await?;
    Ok(rows)
}
