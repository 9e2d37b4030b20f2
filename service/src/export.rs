//! A streaming export of messages as NDJSON: one JSON object per line, in id order.
//!
//! Memory stays bounded however many rows there are, and the bound is easy to state: the export
//! reads keyset-paged batches of at most `batch_rows` messages (`WHERE id > last ORDER BY id
//! LIMIT n`), encodes each batch into one reused buffer, writes it out and drops it before the
//! next batch is read. At no time does it hold more than one batch. This works the same on every
//! backend — sqlx on PostgreSQL has no server-side cursor, so a single long `SELECT` would
//! still run to completion on the server — and each batch borrows a pool connection only for its
//! own statement, so a slow writer never pins one for the whole export.
//!
//! Batches are separate statements: rows committed during the export with a higher id are
//! included, none is read twice or skipped. Pass a transaction from [`crate::db::begin_read`] as
//! the connection to export one snapshot instead.

use std::num::NonZeroU64;

use chrono::SecondsFormat;
use sea_orm::ConnectionTrait;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{ServiceError, error::Context, repo};

/// Rows per batch by default: large enough that statement overhead is negligible, small enough
/// that a batch of 4,000-character bodies stays a few megabytes.
pub const DEFAULT_BATCH_ROWS: NonZeroU64 = match NonZeroU64::new(1000) {
    Some(rows) => rows,
    None => NonZeroU64::MIN,
};

/// Which messages to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportScope {
    All,
    Conversation(i64),
}

/// One line of the export.
#[derive(Debug, Serialize)]
struct ExportedMessage<'a> {
    id: i64,
    conversation_id: i64,
    sender_id: i64,
    reply_to_id: Option<i64>,
    body: &'a str,
    /// RFC 3339 in UTC, with microseconds (PostgreSQL's precision).
    created_at: String,
}

/// Exports the messages of `scope` to `writer` in batches of [`DEFAULT_BATCH_ROWS`], then
/// flushes it. Returns the number of messages written.
pub async fn export_messages<C, W>(
    db: &C,
    scope: ExportScope,
    writer: &mut W,
) -> Result<u64, ServiceError>
where
    C: ConnectionTrait,
    W: AsyncWrite + Unpin,
{
    export_messages_in_batches(db, scope, writer, DEFAULT_BATCH_ROWS).await
}

/// [`export_messages`] with a chosen batch size: at most `batch_rows` messages are held at once.
pub async fn export_messages_in_batches<C, W>(
    db: &C,
    scope: ExportScope,
    writer: &mut W,
    batch_rows: NonZeroU64,
) -> Result<u64, ServiceError>
where
    C: ConnectionTrait,
    W: AsyncWrite + Unpin,
{
    let conversation_id = match scope {
        ExportScope::All => None,
        ExportScope::Conversation(id) => Some(id),
    };
    let mut exported = 0_u64;
    let mut last_id = 0_i64;
    let mut buffer = Vec::new();
    loop {
        let batch =
            repo::messages::batch_after(db, conversation_id, last_id, batch_rows.get()).await?;
        let Some(last) = batch.last() else { break };
        last_id = last.id;

        buffer.clear();
        for message in &batch {
            let line = ExportedMessage {
                id: message.id,
                conversation_id: message.conversation_id,
                sender_id: message.sender_id,
                reply_to_id: message.reply_to_id,
                body: &message.body,
                created_at: message
                    .created_at
                    .to_utc()
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            };
            serde_json::to_writer(&mut buffer, &line).context("encoding a message as JSON")?;
            buffer.push(b'\n');
        }
        writer
            .write_all(&buffer)
            .await
            .context("writing the message export")?;
        exported += batch.len() as u64;
        // A short batch is the last one: no need to ask for an empty one to find out.
        if (batch.len() as u64) < batch_rows.get() {
            break;
        }
    }
    writer
        .flush()
        .await
        .context("flushing the message export")?;
    Ok(exported)
}
