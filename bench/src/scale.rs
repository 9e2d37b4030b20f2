//! The sizes and durations of a run. `full` is the published benchmark; `quick` is a smoke run
//! about a hundred times smaller; `tiny` exists for the end-to-end test and proves nothing.

use std::time::Duration;

use clap::ValueEnum;
use mercado_lab::seed::SeedSizes;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScaleName {
    Full,
    Quick,
    Tiny,
}

/// Everything a run's size depends on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scale {
    pub(crate) name: ScaleName,
    #[serde(skip)]
    pub(crate) small_seed: SeedSizes,
    #[serde(skip)]
    pub(crate) large_seed: SeedSizes,
    /// ORM against raw: timed iterations per side, for fast and for slow cases.
    pub(crate) compare_iterations: usize,
    pub(crate) compare_iterations_slow: usize,
    pub(crate) compare_warmup: usize,
    /// Concurrency levels of the last-10 and pgbench runs.
    pub(crate) last10_concurrency: Vec<u32>,
    pub(crate) last10_duration: Duration,
    /// Users given an API token for the HTTP run (and pairs sampled for the service run).
    pub(crate) last10_callers: usize,
    /// Capture and row counting against plain: rounds of (plain, observed) child processes,
    /// and seconds of load in each.
    pub(crate) overhead_rounds: usize,
    pub(crate) overhead_seconds: f64,
    /// Single-task iterations for the small-against-large comparison.
    pub(crate) small_vs_large_iterations: usize,
    pub(crate) loading_parents: Vec<usize>,
    pub(crate) loading_few_children: usize,
    pub(crate) loading_many_children: usize,
    /// Timed runs per loading cell; cells of more than a million expected rows or statements
    /// get one.
    pub(crate) loading_runs: usize,
    pub(crate) orders_concurrency: Vec<u32>,
    pub(crate) orders_duration: Duration,
    pub(crate) orders_contended_products: usize,
    pub(crate) orders_spread_products: usize,
    pub(crate) orders_buyers: usize,
    pub(crate) bulk_rows: usize,
    pub(crate) bulk_rows_per_row_insert: usize,
}

fn sizes(users: u64, conversations: u64, messages: u64, products: u64) -> SeedSizes {
    SeedSizes {
        users,
        conversations,
        messages,
        products,
    }
}

impl Scale {
    pub(crate) fn of(name: ScaleName) -> Scale {
        match name {
            ScaleName::Full => Scale {
                name,
                small_seed: sizes(100, 200, 10_000, 100),
                large_seed: sizes(10_000, 20_000, 1_000_000, 1_000),
                compare_iterations: 2_000,
                compare_iterations_slow: 200,
                compare_warmup: 200,
                last10_concurrency: vec![1, 8, 32],
                last10_duration: Duration::from_secs(10),
                last10_callers: 1_000,
                overhead_rounds: 5,
                overhead_seconds: 5.0,
                small_vs_large_iterations: 5_000,
                loading_parents: vec![10, 100, 1_000],
                loading_few_children: 10,
                loading_many_children: 1_000,
                loading_runs: 5,
                orders_concurrency: vec![8, 32],
                orders_duration: Duration::from_secs(10),
                orders_contended_products: 4,
                orders_spread_products: 500,
                orders_buyers: 2_000,
                bulk_rows: 200_000,
                bulk_rows_per_row_insert: 5_000,
            },
            ScaleName::Quick => Scale {
                name,
                small_seed: sizes(100, 200, 10_000, 100),
                large_seed: sizes(100, 200, 10_000, 100),
                compare_iterations: 200,
                compare_iterations_slow: 50,
                compare_warmup: 20,
                last10_concurrency: vec![1, 8, 32],
                last10_duration: Duration::from_secs(2),
                last10_callers: 100,
                overhead_rounds: 2,
                overhead_seconds: 2.0,
                small_vs_large_iterations: 500,
                loading_parents: vec![10, 100],
                loading_few_children: 10,
                loading_many_children: 100,
                loading_runs: 3,
                orders_concurrency: vec![8, 32],
                orders_duration: Duration::from_secs(2),
                orders_contended_products: 4,
                orders_spread_products: 50,
                orders_buyers: 100,
                // Fewer rows time too briefly to compare paths at all.
                bulk_rows: 20_000,
                bulk_rows_per_row_insert: 2_000,
            },
            ScaleName::Tiny => Scale {
                name,
                small_seed: sizes(20, 40, 500, 20),
                large_seed: sizes(40, 80, 2_000, 20),
                compare_iterations: 10,
                compare_iterations_slow: 5,
                compare_warmup: 2,
                last10_concurrency: vec![1, 2],
                last10_duration: Duration::from_millis(300),
                last10_callers: 10,
                overhead_rounds: 1,
                overhead_seconds: 0.3,
                small_vs_large_iterations: 20,
                loading_parents: vec![2, 5],
                loading_few_children: 3,
                loading_many_children: 10,
                loading_runs: 1,
                orders_concurrency: vec![2],
                orders_duration: Duration::from_millis(300),
                orders_contended_products: 2,
                orders_spread_products: 8,
                orders_buyers: 10,
                bulk_rows: 300,
                bulk_rows_per_row_insert: 50,
            },
        }
    }

    /// Seconds for pgbench's `-T`, which takes whole seconds: at least 1.
    pub(crate) fn pgbench_seconds(&self) -> u64 {
        self.last10_duration.as_secs().max(1)
    }
}
