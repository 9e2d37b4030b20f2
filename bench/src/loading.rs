//! Section 4: lazy, joined and select-in loading of conversations with their messages and
//! senders (`mercado_lab::loading::threads_*`), for growing parent counts and two child counts.
//!
//! Statements are counted twice over SeaORM's metric callback on a dedicated pool: by
//! `sql_observe` inside a scope (what the application's capture sees) and by a bare
//! counter, which costs nothing per statement and is the one used while timing. The capture
//! keeps every statement in memory, so cells expected to send more than
//! [`OBSERVE_COUNT_LIMIT`] statements are counted by the bare counter alone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::bail;
use mercado_lab::loading::{self, Strategy};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use sql_observe::{self as observe, DetectorMode, ObserveConfig, Scope};

use crate::{fixtures::LoadingFixture, scale::Scale, setup::BenchDatabase};

/// Above this many expected statements the capture's memory (every statement kept) is not
/// worth spending: the bare counter counts alone.
const OBSERVE_COUNT_LIMIT: usize = 200_000;
/// Cells loading at least this many rows, or lazy cells sending this many statements, are
/// timed once: they take seconds to minutes each.
const ONE_RUN_ROWS: usize = 100_000;
const ONE_RUN_LAZY_STATEMENTS: usize = 20_000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadingCell {
    pub(crate) strategy: Strategy,
    pub(crate) parents: usize,
    pub(crate) children_per_parent: usize,
    pub(crate) statements: u64,
    /// Whether `sql_observe` counted too (it agreed with the bare counter, or the run
    /// failed).
    pub(crate) counted_by_observe: bool,
    pub(crate) runs: usize,
    pub(crate) median_ms: f64,
    pub(crate) rows_loaded: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Loading {
    pub(crate) cells: Vec<LoadingCell>,
}

async fn load(db: &DatabaseConnection, strategy: Strategy, ids: &[i64]) -> anyhow::Result<usize> {
    let threads = match strategy {
        Strategy::Lazy => loading::threads_lazy(db, ids).await?,
        Strategy::Joined => loading::threads_joined(db, ids).await?,
        Strategy::SelectIn => loading::threads_select_in(db, ids).await?,
    };
    Ok(threads.iter().map(|t| t.messages.len()).sum())
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    // Nearest rank, as everywhere else.
    let rank = (samples.len() as f64 * 0.5).ceil() as usize;
    samples.get(rank.max(1) - 1).copied().unwrap_or(0.0)
}

pub(crate) async fn run(
    db: &BenchDatabase,
    fixture: &LoadingFixture,
    scale: &Scale,
) -> anyhow::Result<Loading> {
    let (_, dedicated) = crate::setup::connect_app(&db.url).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let mut counted = dedicated.clone();
    let counting = Arc::clone(&counter);
    counted.set_metric_callback(move |_| {
        counting.fetch_add(1, Ordering::Relaxed);
    });
    let mut observed = dedicated.clone();
    observe::install(
        &mut observed,
        ObserveConfig::default().with_mode(DetectorMode::Off),
    );

    let mut cells = Vec::new();
    for (children, fixture_ids) in [
        (fixture.few, &fixture.few_ids),
        (fixture.many, &fixture.many_ids),
    ] {
        for &parents in &scale.loading_parents {
            let ids = &fixture_ids[..parents.min(fixture_ids.len())];
            for strategy in Strategy::ALL {
                let rows = parents * children;
                let lazy_statements = 1 + parents + rows;
                let expensive = rows >= ONE_RUN_ROWS
                    || (strategy == Strategy::Lazy && lazy_statements >= ONE_RUN_LAZY_STATEMENTS);
                let runs = if expensive { 1 } else { scale.loading_runs };

                let counted_by_observe =
                    strategy != Strategy::Lazy || lazy_statements <= OBSERVE_COUNT_LIMIT;
                let observed_count = if counted_by_observe {
                    let (loaded, report) = observe::scope(
                        Scope::command("bench loading"),
                        load(&observed, strategy, ids),
                    )
                    .await;
                    loaded?;
                    Some(report.statement_count() as u64)
                } else {
                    None
                };

                let mut times = Vec::with_capacity(runs);
                let mut statements = 0;
                let mut rows_loaded = 0;
                for _ in 0..runs {
                    let before = counter.load(Ordering::Relaxed);
                    let started = Instant::now();
                    rows_loaded = load(&counted, strategy, ids).await?;
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    statements = counter.load(Ordering::Relaxed) - before;
                }
                if let Some(observed_count) = observed_count
                    && observed_count != statements
                {
                    bail!(
                        "{strategy:?} {parents}×{children}: observe counted {observed_count} statements, the metric callback {statements}"
                    );
                }
                let cell = LoadingCell {
                    strategy,
                    parents,
                    children_per_parent: children,
                    statements,
                    counted_by_observe,
                    runs,
                    median_ms: median_ms(times),
                    rows_loaded,
                };
                println!(
                    "  {:?} {}×{}: {} statements, {:.2} ms (median of {})",
                    strategy, parents, children, cell.statements, cell.median_ms, runs
                );
                cells.push(cell);
            }
        }
    }
    Ok(Loading { cells })
}
