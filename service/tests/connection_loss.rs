//! A connection lost before COMMIT, on PostgreSQL: the operation runs again on a fresh
//! connection, transparently, and is applied exactly once.
//!
//! To kill a backend at a known moment, the test holds `LOCK TABLE inventory IN ACCESS
//! EXCLUSIVE MODE` from a connection of its own: the operation blocks on it in the middle of its
//! transaction, the test finds its backend in `pg_stat_activity` waiting on the lock and
//! terminates it (`pg_terminate_backend`, as an administrator or a failover would), then
//! releases the lock.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};
use service::{
    domain::orders::IdempotencyKey,
    ops::{orders::place_order, products::get_product},
};
use support::*;

/// Holds an ACCESS EXCLUSIVE lock on `inventory` until the transaction is dropped.
async fn lock_inventory(db: &DatabaseConnection) -> anyhow::Result<DatabaseTransaction> {
    let txn = db.begin().await?;
    txn.execute_unprepared("LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
        .await?;
    Ok(txn)
}

/// Waits (at most 20 s) for a backend other than `lock_holder`'s to wait on a lock, and
/// terminates it.
async fn kill_the_waiting_backend(lock_holder: &DatabaseTransaction) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Activity is read from a snapshot kept for the rest of the transaction: drop it first.
        lock_holder
            .execute_unprepared("SELECT pg_stat_clear_snapshot()")
            .await?;
        let killed = lock_holder
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND wait_event_type = 'Lock'",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "killed"))
            .transpose()?
            .unwrap_or(0);
        if killed > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let others = lock_holder
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT coalesce(state, '') || ' ' || coalesce(wait_event_type, '') || ' ' \
                     || query AS q FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                ))
                .await?
                .into_iter()
                .map(|row| row.try_get::<String>("", "q"))
                .collect::<Result<Vec<_>, _>>()?;
            anyhow::bail!("no backend ever waited on the lock; the others: {others:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

postgres_tests! {
    async fn an_order_whose_connection_is_killed_before_commit_is_placed_once_on_a_fresh_one(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let buyer = user_with(&db.conn, "buyer", "100").await?;
        let pen = product(&db.conn, seller, "PEN", "2.50", 10).await?.id;

        let lock = lock_inventory(&db.conn).await?;
        let pool = db.conn.clone();
        let order = tokio::spawn(async move { place_order(&pool, buyer, order_of(&[(pen, 3)])).await });
        if let Err(error) = kill_the_waiting_backend(&lock).await {
            let outcome = tokio::time::timeout(Duration::from_secs(1), order).await;
            anyhow::bail!("{error}; the operation: {outcome:?}");
        }
        lock.rollback().await?;

        let placed = order.await??;
        assert_eq!(placed.items.len(), 1);
        assert_eq!(order_count(&db.conn).await?, 1, "placed exactly once");
        assert_eq!(stock(&db.conn, pen).await?, 7);
        assert_eq!(balance(&db.conn, buyer).await?, money("92.50"));
        assert_eq!(balance(&db.conn, seller).await?, money("7.50"));
        Ok(())
    }

    async fn a_keyed_order_whose_connection_is_killed_answers_with_the_one_order_it_placed(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let buyer = user_with(&db.conn, "buyer", "100").await?;
        let pen = product(&db.conn, seller, "PEN", "2.50", 10).await?.id;
        let keyed = || {
            let mut request = order_of(&[(pen, 2)]);
            request.idempotency_key = Some(IdempotencyKey::parse("key-1").expect("a valid key"));
            request
        };

        let lock = lock_inventory(&db.conn).await?;
        let pool = db.conn.clone();
        let request = keyed();
        let order = tokio::spawn(async move { place_order(&pool, buyer, request).await });
        if let Err(error) = kill_the_waiting_backend(&lock).await {
            let outcome = tokio::time::timeout(Duration::from_secs(1), order).await;
            anyhow::bail!("{error}; the operation: {outcome:?}");
        }
        lock.rollback().await?;
        let placed = order.await??;

        let again = place_order(&db.conn, buyer, keyed()).await?;
        assert_eq!(again.id, placed.id, "the key answers with the same order");
        assert_eq!(order_count(&db.conn).await?, 1);
        assert_eq!(stock(&db.conn, pen).await?, 8);
        assert_eq!(balance(&db.conn, buyer).await?, money("95.00"));
        Ok(())
    }

    async fn a_read_whose_connection_is_killed_is_answered_from_a_fresh_one(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let pen = product(&db.conn, seller, "PEN", "2.50", 10).await?.id;

        let lock = lock_inventory(&db.conn).await?;
        let pool = db.conn.clone();
        let read = tokio::spawn(async move { get_product(&pool, pen).await });
        if let Err(error) = kill_the_waiting_backend(&lock).await {
            let outcome = tokio::time::timeout(Duration::from_secs(1), read).await;
            anyhow::bail!("{error}; the operation: {outcome:?}");
        }
        lock.rollback().await?;

        let found = read.await??;
        assert_eq!((found.id, found.stock), (pen, 10));
        Ok(())
    }
}
