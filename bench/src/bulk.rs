//! Section 7: the ways to insert many messages, into a scratch conversation that is deleted
//! afterwards: one INSERT per row (through `service::repo::messages::insert`, as posting a
//! message does, all in one transaction so that the figure is the statements' and not one
//! commit per row), `bulk::insert_chunked` (multi-row INSERTs, one transaction),
//! `bulk::insert_messages` and `bulk::copy_messages` (COPY, the reference).

use std::time::Instant;

use chrono::{SubsecRound, Utc};
use serde::Serialize;
use service::{
    bulk::{NewMessageRow, copy_messages, insert_chunked, insert_messages},
    db::begin_write,
};

use crate::{
    fixtures,
    scale::Scale,
    setup::{BenchDatabase, SeededIds},
    stats::ratio,
};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BulkPath {
    pub(crate) path: &'static str,
    pub(crate) rows: usize,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
    /// This path's rows/s ÷ COPY's.
    pub(crate) fraction_of_copy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bulk {
    pub(crate) paths: Vec<BulkPath>,
}

fn rows(conversation_id: i64, senders: &[i64], count: usize) -> Vec<NewMessageRow> {
    let now = Utc::now().trunc_subsecs(6);
    (0..count)
        .map(|i| NewMessageRow {
            conversation_id,
            sender_id: senders[i % senders.len()],
            reply_to_id: None,
            body: format!("Bulk benchmark message {i}, with a body of ordinary length"),
            created_at: now,
        })
        .collect()
}

async fn one_insert_per_row(db: &BenchDatabase, rows: &[NewMessageRow]) -> anyhow::Result<()> {
    let txn = begin_write(&db.plain).await?;
    for row in rows {
        service::repo::messages::insert(
            &txn,
            row.conversation_id,
            row.sender_id,
            row.body.clone(),
            row.reply_to_id,
            row.created_at,
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn chunked(db: &BenchDatabase, rows: &[NewMessageRow]) -> anyhow::Result<()> {
    let txn = begin_write(&db.plain).await?;
    let models = rows
        .iter()
        .map(|row| entity::messages::ActiveModel {
            conversation_id: sea_orm::Set(row.conversation_id),
            sender_id: sea_orm::Set(row.sender_id),
            reply_to_id: sea_orm::Set(row.reply_to_id),
            body: sea_orm::Set(row.body.clone()),
            created_at: sea_orm::Set(row.created_at.into()),
            ..Default::default()
        })
        .collect();
    insert_chunked(&txn, models).await?;
    txn.commit().await?;
    Ok(())
}

pub(crate) async fn run(
    db: &BenchDatabase,
    ids: &SeededIds,
    scale: &Scale,
) -> anyhow::Result<Bulk> {
    let conversation_id = fixtures::scratch_conversation(db, ids).await?;
    let senders: Vec<i64> = ids.users.iter().take(2).copied().collect();
    let measured = measure_paths(db, conversation_id, &senders, scale).await;
    // Deleted whether the measurement worked or not.
    fixtures::delete_conversation(db.pool(), conversation_id).await?;
    let mut paths = measured?;
    let copy_rate = paths
        .iter()
        .find(|p| p.path == "copy_messages")
        .map_or(0.0, |p| p.rows_per_second);
    for path in &mut paths {
        path.fraction_of_copy = ratio(path.rows_per_second, copy_rate);
        println!(
            "  {}: {} rows, {:.0} rows/s ({:.1}% of COPY)",
            path.path,
            path.rows,
            path.rows_per_second,
            path.fraction_of_copy * 100.0
        );
    }
    Ok(Bulk { paths })
}

async fn measure_paths(
    db: &BenchDatabase,
    conversation_id: i64,
    senders: &[i64],
    scale: &Scale,
) -> anyhow::Result<Vec<BulkPath>> {
    let per_row = rows(conversation_id, senders, scale.bulk_rows_per_row_insert);
    let many = rows(conversation_id, senders, scale.bulk_rows);
    let mut paths = Vec::new();
    for path in [
        "one_insert_per_row",
        "insert_chunked",
        "insert_messages",
        "copy_messages",
    ] {
        let batch = if path == "one_insert_per_row" {
            &per_row
        } else {
            &many
        };
        let started = Instant::now();
        match path {
            "one_insert_per_row" => one_insert_per_row(db, batch).await?,
            "insert_chunked" => chunked(db, batch).await?,
            "insert_messages" => {
                insert_messages(&db.plain, batch).await?;
            }
            _ => {
                copy_messages(db.pool(), batch).await?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        paths.push(BulkPath {
            path,
            rows: batch.len(),
            seconds,
            rows_per_second: ratio(batch.len() as f64, seconds),
            fraction_of_copy: 0.0,
        });
        // Each path starts from the same empty conversation.
        sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(db.pool())
            .await?;
    }
    Ok(paths)
}
