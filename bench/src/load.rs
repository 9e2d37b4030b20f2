//! Closed-loop load: N tasks each send one request after the other for a fixed duration.
//! Throughput is completed requests over the wall time of the whole run; every request's
//! latency is kept, and failures are counted by kind.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::stats::{LatencySummary, Samples, ratio};

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadFigures {
    pub(crate) concurrency: u32,
    pub(crate) seconds: f64,
    /// Successful requests.
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: BTreeMap<String, u64>,
    pub(crate) throughput_per_s: f64,
    /// Latency of the successful requests, in microseconds.
    pub(crate) latency: LatencySummary,
}

/// Runs `request(i)` from `concurrency` tasks for `duration`, `i` drawn uniformly below
/// `choices` (each task has its own seeded generator). A request returns `Err(kind)` on failure.
pub(crate) async fn run_for<F, Fut>(
    concurrency: u32,
    duration: Duration,
    choices: usize,
    request: F,
) -> anyhow::Result<LoadFigures>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let request = Arc::clone(&request);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(u64::from(task));
            let mut samples = Samples::with_capacity(4096);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let choice = rng.random_range(0..choices.max(1));
                let sent = Instant::now();
                match request(choice).await {
                    Ok(()) => samples.push(sent.elapsed()),
                    Err(kind) => *errors.entry(kind).or_default() += 1,
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Samples::default();
    let mut errors_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (task_samples, task_errors) = task.await?;
        samples.extend(task_samples);
        for (kind, count) in task_errors {
            *errors_by_kind.entry(kind).or_default() += count;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = samples.len() as u64;
    Ok(LoadFigures {
        concurrency,
        seconds,
        requests,
        errors: errors_by_kind.values().sum(),
        errors_by_kind,
        throughput_per_s: ratio(requests as f64, seconds),
        latency: samples.summary(),
    })
}
