//! The guarantees under real concurrency: many tasks on a pool of 24 connections, started
//! together, hammering the same rows. Written for PostgreSQL, where the transactions truly run
//! in parallel and only the conditional updates, the lock order and the unique constraints keep
//! the books straight; they run on SQLite too, where writers queue for the file's one write lock
//! (`BEGIN IMMEDIATE`), which proves the same invariants without the parallelism.

mod support;

use std::{collections::HashMap, sync::Arc};

use entity::transfers;
use mercado_testkit::{TestDb, backend_tests};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};
use service::{
    ServiceError,
    db::{DatabaseSettings, connect},
    domain::{
        money::Money,
        orders::{IdempotencyKey, PlaceOrder},
        users::Email,
    },
    ops::{
        self,
        money::{deposit, transfer},
        orders::{cancel_order, place_order},
    },
};
use support::*;
use tokio::{sync::Barrier, task::JoinSet};

const POOL_SIZE: u32 = 24;

/// A pool of 24 connections on the test's database, all of them opened before it is returned:
/// otherwise the first task would finish while the others still wait for a connection to be
/// established, and nothing would race.
async fn wide_pool(db: &TestDb) -> anyhow::Result<DatabaseConnection> {
    let pool = connect(&DatabaseSettings {
        max_connections: POOL_SIZE,
        ..DatabaseSettings::for_url(db.url.clone())
    })
    .await?;
    let mut held = Vec::new();
    for _ in 0..POOL_SIZE {
        held.push(pool.begin().await?);
    }
    drop(held);
    Ok(pool)
}

/// Runs `tasks` copies of `work(task_number)` at once, all released by one barrier, and
/// collects every result they produced.
async fn race<T, F, Fut>(tasks: usize, work: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Vec<T>> + Send + 'static,
{
    let start = Arc::new(Barrier::new(tasks));
    let mut set = JoinSet::new();
    for task in 0..tasks {
        let start = Arc::clone(&start);
        let work = work(task);
        set.spawn(async move {
            start.wait().await;
            work.await
        });
    }
    let mut results = Vec::new();
    while let Some(task_results) = set.join_next().await {
        results.extend(task_results?);
    }
    Ok(results)
}

backend_tests! {
    async fn sixteen_tasks_racing_400_purchases_of_100_items_sell_exactly_100(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        let seller = user_with(&pool, "seller", "0").await?;
        let mut buyers = Vec::new();
        for i in 0..8 {
            buyers.push(user_with(&pool, &format!("buyer{i}"), "100").await?);
        }
        let item = product(&pool, seller, "HOT", "1.00", 100).await?.id;
        let money_before = money_in_system(&pool).await?;

        let results = race(16, |task| {
            let pool = pool.clone();
            let buyer = buyers[task % buyers.len()];
            async move {
                let mut results = Vec::new();
                for _ in 0..25 {
                    results.push(place_order(&pool, buyer, order_of(&[(item, 1)])).await);
                }
                results
            }
        })
        .await?;

        let sold = results.iter().filter(|r| r.is_ok()).count();
        let refused = results.iter()
            .filter(|r| matches!(r, Err(ServiceError::InsufficientStock { product_id }) if *product_id == item))
            .count();
        let unexpected: Vec<_> = results.iter().filter_map(|r| r.as_ref().err())
            .filter(|e| !matches!(e, ServiceError::InsufficientStock { .. }))
            .collect();
        assert!(unexpected.is_empty(), "{unexpected:?}");
        assert_eq!((sold, refused), (100, 300));
        assert_eq!(stock(&pool, item).await?, 0);
        assert_eq!(order_count(&pool).await?, 100);
        assert_eq!(order_item_count(&pool).await?, 100);
        assert_eq!(balance(&pool, seller).await?, money("100.00"));
        assert_eq!(money_in_system(&pool).await?, money_before);
        Ok(())
    }

    async fn a_thousand_random_transfers_among_ten_accounts_keep_every_cent_accounted_for(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        let mut accounts = Vec::new();
        for i in 0..10 {
            accounts.push(user_with(&pool, &format!("user{i}"), "100").await?);
        }
        let money_before = money_in_system(&pool).await?;
        let seed: u64 = rand::random();
        let mut rng = StdRng::seed_from_u64(seed);
        // 8 tasks × 125 transfers, planned up front from a seed printed on failure.
        let plans: Vec<Vec<(i64, i64, Money)>> = (0..8)
            .map(|_| {
                (0..125)
                    .map(|_| {
                        let from = rng.random_range(0..accounts.len());
                        let to = (from + rng.random_range(1..accounts.len())) % accounts.len();
                        let cents: i64 = rng.random_range(1..=5_000);
                        let amount = money(&format!("{}.{:02}", cents / 100, cents % 100));
                        (accounts[from], accounts[to], amount)
                    })
                    .collect()
            })
            .collect();

        let results = race(8, |task| {
            let pool = pool.clone();
            let plan = plans[task].clone();
            async move {
                let mut results = Vec::new();
                for (from, to, amount) in plan {
                    results.push(transfer(&pool, from, to, amount, None).await);
                }
                results
            }
        })
        .await?;

        let applied = results.iter().filter(|r| r.is_ok()).count();
        let unexpected: Vec<_> = results.iter().filter_map(|r| r.as_ref().err())
            .filter(|e| !matches!(e, ServiceError::InsufficientFunds))
            .collect();
        assert!(unexpected.is_empty(), "seed {seed}: {unexpected:?}");
        assert_eq!(results.len(), 1000);
        assert!(applied > 0, "seed {seed}: no transfer went through");
        assert_eq!(money_in_system(&pool).await?, money_before, "seed {seed}");

        // The ledger explains every balance: 100 + what came in - what went out.
        let ledger = transfers::Entity::find().all(&pool).await?;
        assert_eq!(ledger.len(), applied, "seed {seed}");
        let mut expected: HashMap<i64, rust_decimal::Decimal> = accounts.iter()
            .map(|&id| (id, money("100").as_decimal()))
            .collect();
        for entry in &ledger {
            *expected.entry(entry.from_user_id).or_default() -= entry.amount.round_dp(2);
            *expected.entry(entry.to_user_id).or_default() += entry.amount.round_dp(2);
        }
        for &account in &accounts {
            let actual = balance(&pool, account).await?;
            assert_eq!(actual.as_decimal(), expected[&account], "seed {seed}, user {account}");
            assert!(actual >= Money::ZERO);
        }
        Ok(())
    }

    async fn twenty_concurrent_cancels_of_one_order_refund_it_exactly_once(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        // The seller could afford to give the money back many times over: only the status
        // check may stop a second refund.
        let seller = user_with(&pool, "seller", "1000").await?;
        let buyer = user_with(&pool, "buyer", "50").await?;
        let item = product(&pool, seller, "ITEM", "7.25", 10).await?.id;
        let order = place_order(&pool, buyer, order_of(&[(item, 4)])).await?;

        let results = race(20, |_| {
            let pool = pool.clone();
            async move { vec![cancel_order(&pool, buyer, order.id).await] }
        })
        .await?;

        let cancelled = results.iter().filter(|r| r.is_ok()).count();
        let refused = results.iter()
            .filter(|r| {
                matches!(r, Err(ServiceError::OrderNotCancellable { reason }) if reason.contains("already"))
            })
            .count();
        let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!((cancelled, refused), (1, 19), "{errors:?}");
        assert_eq!(balance(&pool, buyer).await?, money("50.00"));
        assert_eq!(balance(&pool, seller).await?, money("1000.00"));
        assert_eq!(stock(&pool, item).await?, 10);
        Ok(())
    }

    async fn one_idempotency_key_sent_twenty_times_at_once_places_one_order_and_debits_once(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        let seller = user_with(&pool, "seller", "0").await?;
        let buyer = user_with(&pool, "buyer", "100").await?;
        let item = product(&pool, seller, "ITEM", "3.50", 50).await?.id;

        let results = race(20, |_| {
            let pool = pool.clone();
            async move {
                let request = PlaceOrder {
                    lines: lines(&[(item, 2)]),
                    idempotency_key: IdempotencyKey::parse("retry-me").ok(),
                };
                vec![place_order(&pool, buyer, request).await]
            }
        })
        .await?;

        let ids: Vec<i64> = results.iter()
            .map(|r| r.as_ref().map(|order| order.id).map_err(|e| format!("{e:?}")))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        assert_eq!(ids.len(), 20);
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(order_count(&pool).await?, 1);
        assert_eq!(balance(&pool, buyer).await?, money("93.00"));
        assert_eq!(balance(&pool, seller).await?, money("7.00"));
        assert_eq!(stock(&pool, item).await?, 48);
        Ok(())
    }

    async fn one_deposit_key_sent_twenty_times_at_once_deposits_once_and_answers_one_balance(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        let ann = user_with(&pool, "ann", "1").await?;

        let results = race(20, |_| {
            let pool = pool.clone();
            async move { vec![deposit(&pool, ann, money("7.25"), key("top-up-1")).await] }
        })
        .await?;

        let balances: Vec<String> = results.iter()
            .map(|r| r.as_ref().map(Money::to_string).map_err(|e| format!("{e:?}")))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        assert_eq!(balances, vec!["8.25".to_owned(); 20]);
        assert_eq!(balance(&pool, ann).await?, money("8.25"));
        // The one of `user_with` and the one of the key.
        assert_eq!(deposit_count(&pool).await?, 2);
        Ok(())
    }

    async fn one_transfer_key_sent_twenty_times_at_once_moves_the_money_once(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;
        // Exactly the amount: a second transfer would be refused, so only a replay answers 20 times.
        let ann = user_with(&pool, "ann", "30").await?;
        let bob = user_with(&pool, "bob", "0").await?;

        let results = race(20, |_| {
            let pool = pool.clone();
            async move { vec![transfer(&pool, ann, bob, money("30"), key("pay-bob")).await] }
        })
        .await?;

        let answers: Vec<(i64, Money)> = results.iter()
            .map(|r| r.as_ref().map(|t| (t.id, t.sender_balance)).map_err(|e| format!("{e:?}")))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        assert_eq!(answers.len(), 20);
        assert!(answers.iter().all(|answer| *answer == (answers[0].0, Money::ZERO)), "{answers:?}");
        assert_eq!(transfer_count(&pool).await?, 1);
        assert_eq!(balance(&pool, ann).await?, Money::ZERO);
        assert_eq!(balance(&pool, bob).await?, money("30.00"));
        Ok(())
    }

    async fn ten_concurrent_registrations_with_one_email_admit_exactly_one(
        db: TestDb
    ) -> anyhow::Result<()> {
        let pool = wide_pool(&db).await?;

        // Each would find the email free if it looked first; only the unique index can decide.
        let results = race(10, |task| {
            let pool = pool.clone();
            let mut user = new_user(&format!("racer{task}"));
            async move {
                user.email = match Email::parse("Same@Example.com") {
                    Ok(email) => email,
                    Err(error) => return vec![Err(error)],
                };
                vec![ops::users::register(&pool, user).await]
            }
        })
        .await?;

        let registered = results.iter().filter(|r| r.is_ok()).count();
        let taken = results.iter().filter(|r| matches!(r, Err(ServiceError::EmailTaken))).count();
        assert_eq!((registered, taken), (1, 9));
        Ok(())
    }
}
