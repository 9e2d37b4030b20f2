//! Section 5: `place_order` under load, many buyers on a few products (every order contends
//! for the same inventory rows) and on many products (contention only by chance). Stock and
//! balances are topped up before each run, far beyond what it can use, so every attempt can
//! succeed: any error is a real failure, counted by kind.

use std::sync::Arc;

use serde::Serialize;
use service::ServiceError;

use crate::{
    fixtures,
    load::{LoadFigures, run_for},
    scale::Scale,
    setup::{BenchDatabase, SeededIds},
};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrderRun {
    /// `contended` (a few products) or `spread` (many).
    pub(crate) workload: &'static str,
    pub(crate) products: usize,
    pub(crate) buyers: usize,
    pub(crate) load: LoadFigures,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Orders {
    pub(crate) runs: Vec<OrderRun>,
}

/// The error's variant name: what the run reports failures by.
fn kind(error: &ServiceError) -> String {
    let kind = match error {
        ServiceError::Validation { .. } => "validation",
        ServiceError::NotFound { .. } => "not_found",
        ServiceError::Unauthenticated => "unauthenticated",
        ServiceError::EmailTaken => "email_taken",
        ServiceError::UsernameTaken => "username_taken",
        ServiceError::SkuTaken => "sku_taken",
        ServiceError::InsufficientStock { .. } => "insufficient_stock",
        ServiceError::InsufficientFunds => "insufficient_funds",
        ServiceError::NotParticipant { .. } => "not_participant",
        ServiceError::OrderNotCancellable { .. } => "order_not_cancellable",
        ServiceError::IdempotencyKeyReused => "idempotency_key_reused",
        ServiceError::Contended(_) => "contended",
        ServiceError::Unavailable(_) => "unavailable",
        ServiceError::ConnectionLost(_) => "connection_lost",
        ServiceError::CommitOutcomeUnknown(_) => "commit_outcome_unknown",
        ServiceError::TimedOut { .. } => "timed_out",
        ServiceError::Unexpected { .. } => "unexpected",
    };
    kind.to_owned()
}

pub(crate) async fn run(
    db: &BenchDatabase,
    ids: &SeededIds,
    scale: &Scale,
) -> anyhow::Result<Orders> {
    // Buyers are the seeded users after the ten the ORM-against-raw orders use.
    let buyers: Arc<Vec<i64>> = Arc::new(
        ids.users
            .iter()
            .skip(10)
            .take(scale.orders_buyers)
            .copied()
            .collect(),
    );
    if buyers.is_empty() {
        anyhow::bail!("the seed has too few users for the order runs");
    }
    let workloads = [
        (
            "contended",
            fixtures::contended_products(ids, scale.orders_contended_products)?,
        ),
        (
            "spread",
            fixtures::spread_products(ids, scale.orders_spread_products),
        ),
    ];
    let mut runs = Vec::new();
    for (workload, products) in workloads {
        let products = Arc::new(products);
        for &concurrency in &scale.orders_concurrency {
            fixtures::top_up_balances(db.pool(), &buyers).await?;
            fixtures::top_up_stock(db.pool(), &products).await?;
            let app = db.app.clone();
            let chosen_buyers = Arc::clone(&buyers);
            let chosen_products = Arc::clone(&products);
            let choices = buyers.len() * products.len();
            let load = run_for(concurrency, scale.orders_duration, choices, move |i| {
                let app = app.clone();
                let buyer = chosen_buyers[i % chosen_buyers.len()];
                let product = chosen_products[i / chosen_buyers.len()];
                async move {
                    let order =
                        fixtures::one_of_each(&[product]).map_err(|e| format!("request: {e}"))?;
                    service::ops::orders::place_order(&app, buyer, order)
                        .await
                        .map(drop)
                        .map_err(|error| kind(&error))
                }
            })
            .await?;
            println!(
                "  place_order {workload} ({} products) × {concurrency}: {:.0} orders/s, p50 {} µs, p99 {} µs, {} errors {:?}",
                products.len(),
                load.throughput_per_s,
                load.latency.p50_us,
                load.latency.p99_us,
                load.errors,
                load.errors_by_kind
            );
            runs.push(OrderRun {
                workload,
                products: products.len(),
                buyers: buyers.len(),
                load,
            });
        }
    }
    Ok(Orders { runs })
}
