//! Bulk writes for seeding: chunked multi-row `INSERT`s on every backend, and `COPY` on
//! PostgreSQL.
//!
//! One `INSERT … VALUES (…), (…)` binds one parameter per column per row, and every backend caps
//! the parameters of a statement: PostgreSQL's wire protocol counts them in 16 bits (65,535),
//! SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` is 32,766. SeaORM's `insert_many` does not
//! split (sqlx refuses the statement client-side), so [`insert_chunked`] does: rows per statement
//! = the backend's limit ÷ the entity's column count, computed from the entity, never guessed.
//!
//! `COPY … FROM STDIN` ([`copy_messages`]) has no such limit and skips per-statement parsing and
//! planning altogether; it is the fastest way into PostgreSQL. Rows are sent as CSV written by
//! the `csv` crate, every field quoted, so any text — quotes, commas, tabs, newlines,
//! backslashes, emoji — arrives exactly as it was.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use entity::messages;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Iterable,
    RuntimeErr, Set,
    sqlx::{self, PgPool, postgres::PgPoolCopyExt},
};

use crate::{ServiceError, db::begin_write, error::Context};

/// Bind parameters one PostgreSQL (and MySQL) statement may carry.
pub const POSTGRES_MAX_BIND_PARAMETERS: usize = 65_535;
/// Bind parameters one SQLite statement may carry (`SQLITE_MAX_VARIABLE_NUMBER` since 3.32).
pub const SQLITE_MAX_BIND_PARAMETERS: usize = 32_766;

/// The bind-parameter limit of one statement on `backend`.
pub fn max_bind_parameters(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Sqlite => SQLITE_MAX_BIND_PARAMETERS,
        // PostgreSQL and MySQL both count parameters in 16 bits.
        _ => POSTGRES_MAX_BIND_PARAMETERS,
    }
}

/// How many rows of entity `E` one `INSERT` may carry on `backend`. Every column is counted,
/// generated ones too, so the figure holds whichever columns a row sets.
pub fn rows_per_statement<E: EntityTrait>(backend: DbBackend) -> usize {
    let columns = E::Column::iter().count().max(1);
    (max_bind_parameters(backend) / columns).max(1)
}

/// Inserts `models` in as few statements as the bind-parameter limit allows, on `db` as given:
/// pass a transaction to make the whole load (and any other seeding with it) all or nothing.
/// Every model must set every column that has no default on the database side, as for
/// `insert_many`. Returns the number of rows inserted.
pub async fn insert_chunked<C, A>(db: &C, models: Vec<A>) -> Result<u64, ServiceError>
where
    C: ConnectionTrait,
    A: ActiveModelTrait,
{
    let chunk_rows = rows_per_statement::<A::Entity>(db.get_database_backend());
    let mut remaining = models.into_iter();
    let mut inserted = 0;
    loop {
        let chunk: Vec<A> = remaining.by_ref().take(chunk_rows).collect();
        if chunk.is_empty() {
            return Ok(inserted);
        }
        inserted += A::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
}

/// A message to load in bulk. Unlike [`crate::ops::messages::post_message`] nothing is checked
/// beyond what the database enforces (foreign keys, NOT NULL): this is for seeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessageRow {
    pub conversation_id: i64,
    pub sender_id: i64,
    pub reply_to_id: Option<i64>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl NewMessageRow {
    fn to_active_model(&self) -> messages::ActiveModel {
        messages::ActiveModel {
            conversation_id: Set(self.conversation_id),
            sender_id: Set(self.sender_id),
            reply_to_id: Set(self.reply_to_id),
            body: Set(self.body.clone()),
            created_at: Set(self.created_at.into()),
            ..Default::default()
        }
    }
}

/// Inserts the messages with chunked multi-row `INSERT`s inside one write transaction: all of
/// them, or — when any row fails — none. Works on every backend. Returns the number inserted.
pub async fn insert_messages(
    db: &DatabaseConnection,
    rows: &[NewMessageRow],
) -> Result<u64, ServiceError> {
    let txn = begin_write(db).await?;
    let models = rows.iter().map(NewMessageRow::to_active_model).collect();
    let inserted = insert_chunked(&txn, models).await?;
    txn.commit().await?;
    Ok(inserted)
}

/// The one `COPY` statement: a constant, no value is ever formatted into it. Every CSV field is
/// quoted, which keeps an empty body an empty string; `FORCE_NULL` turns the empty
/// `reply_to_id` back into NULL.
const COPY_MESSAGES: &str = "COPY messages (conversation_id, sender_id, reply_to_id, body, created_at) \
     FROM STDIN (FORMAT csv, FORCE_NULL (reply_to_id))";

/// CSV is sent to the server in pieces of about this size, so memory stays bounded however
/// many rows there are.
const COPY_SEND_BYTES: usize = 1 << 20;

/// Loads the messages into PostgreSQL with `COPY … FROM STDIN`. One statement: it is atomic on
/// its own — a bad row (say, an unknown conversation) loads nothing. Take the pool from
/// `DatabaseConnection::get_postgres_connection_pool()`. Returns the number of rows copied.
pub async fn copy_messages(pool: &PgPool, rows: &[NewMessageRow]) -> Result<u64, ServiceError> {
    let mut copy = pool.copy_in_raw(COPY_MESSAGES).await.map_err(db_error)?;
    let mut pending = rows.iter().peekable();
    while pending.peek().is_some() {
        let sent = match encode_csv_piece(&mut pending) {
            Ok(piece) => copy.send(piece).await.map(|_| ()).map_err(db_error),
            Err(error) => Err(error).context("encoding messages as CSV"),
        };
        if let Err(error) = sent {
            // The connection must leave COPY mode before it goes back to the pool.
            let _ = copy.abort("the client could not send its data").await;
            return Err(error);
        }
    }
    copy.finish().await.map_err(db_error)
}

/// Encodes rows from `rows` as CSV until about [`COPY_SEND_BYTES`] are ready, or rows run out.
fn encode_csv_piece<'a>(
    rows: &mut impl Iterator<Item = &'a NewMessageRow>,
) -> Result<Vec<u8>, csv::Error> {
    let mut csv = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(COPY_SEND_BYTES));
    // `get_ref` sees what the writer has flushed so far, which trails by its small buffer.
    while csv.get_ref().len() < COPY_SEND_BYTES {
        let Some(row) = rows.next() else { break };
        let reply_to_id = row.reply_to_id.map(|id| id.to_string()).unwrap_or_default();
        csv.write_record([
            row.conversation_id.to_string().as_str(),
            row.sender_id.to_string().as_str(),
            reply_to_id.as_str(),
            row.body.as_str(),
            row.created_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_str(),
        ])?;
    }
    csv.into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}

/// A driver error, as SeaORM would have wrapped it, so that it is classified like any other.
fn db_error(error: sqlx::Error) -> ServiceError {
    ServiceError::from(DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error))))
}
