//! Messages.
//!
//! Every read here walks the `(conversation_id, id)` index: a conversation's page is a backward
//! range scan on it (keyset pagination: `id < before`, never OFFSET), guarded by the reader's
//! participation in the same statement; "the newest message of each conversation" is one
//! `MAX(id)` probe of it per conversation ([`super::conversations::with_newest_message`]).

use chrono::{DateTime, Utc};
use entity::{conversation_participants as participants, messages, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
    prelude::DateTimeWithTimeZone,
    sea_query::{Expr, Query},
};

/// Inserts a message and returns it as stored.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    sender_id: i64,
    body: String,
    reply_to_id: Option<i64>,
    created_at: DateTime<Utc>,
) -> Result<messages::Model, DbErr> {
    messages::ActiveModel {
        conversation_id: Set(conversation_id),
        sender_id: Set(sender_id),
        body: Set(body),
        reply_to_id: Set(reply_to_id),
        created_at: Set(created_at.into()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Whether message `message_id` exists and belongs to conversation `conversation_id`.
pub async fn is_in_conversation<C: ConnectionTrait>(
    db: &C,
    message_id: i64,
    conversation_id: i64,
) -> Result<bool, DbErr> {
    let count = messages::Entity::find_by_id(message_id)
        .filter(messages::Column::ConversationId.eq(conversation_id))
        .count(db)
        .await?;
    Ok(count > 0)
}

/// One message of a page, with what a page shows of its sender: the columns a
/// [`crate::domain::chat::Message`] needs and no others, decoded straight into this row.
#[derive(Debug, Clone, FromQueryResult)]
pub struct PageRow {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub sender_display_name: String,
    pub body: String,
    pub reply_to_id: Option<i64>,
    pub created_at: DateTimeWithTimeZone,
}

/// The query behind a page, as `reader_id` may read it: the conversation's messages older than
/// `before` (all when `None`), newest first, at most `fetch` of them, each with its sender's
/// names, and none at all unless `reader_id` takes part in the conversation. The participant
/// check is an uncorrelated `EXISTS`, which PostgreSQL evaluates once before the scan, so the
/// page and the check are one statement and one round trip. Public so that a test can
/// `EXPLAIN` exactly the statement the application runs.
pub fn page_query(
    conversation_id: i64,
    reader_id: i64,
    before: Option<i64>,
    fetch: u64,
) -> Select<messages::Entity> {
    let reader_takes_part = Query::select()
        // a constant of the statement, not a value: `SELECT 1`, as one writes it by hand
        .expr(Expr::cust("1"))
        .from(participants::Entity)
        .and_where(participants::Column::ConversationId.eq(conversation_id))
        .and_where(participants::Column::UserId.eq(reader_id))
        .to_owned();
    let mut query = messages::Entity::find()
        .select_only()
        .columns([
            messages::Column::Id,
            messages::Column::ConversationId,
            messages::Column::SenderId,
        ])
        .column_as(users::Column::Username, "sender_username")
        .column_as(users::Column::DisplayName, "sender_display_name")
        .columns([
            messages::Column::Body,
            messages::Column::ReplyToId,
            messages::Column::CreatedAt,
        ])
        .inner_join(users::Entity)
        .filter(messages::Column::ConversationId.eq(conversation_id))
        .filter(Expr::exists(reader_takes_part));
    if let Some(before) = before {
        query = query.filter(messages::Column::Id.lt(before));
    }
    query.order_by_desc(messages::Column::Id).limit(fetch)
}

/// Runs [`page_query`]: one statement, however large `fetch` is. An empty answer means either
/// that `reader_id` takes no part in the conversation or that it has no message older than
/// `before`; [`super::conversations::is_participant`] tells which.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    reader_id: i64,
    before: Option<i64>,
    fetch: u64,
) -> Result<Vec<PageRow>, DbErr> {
    page_query(conversation_id, reader_id, before, fetch)
        .into_model::<PageRow>()
        .all(db)
        .await
}

/// Up to `size` messages with an id above `after`, oldest first — one batch of a keyset scan
/// over the whole table, or over one conversation's index range.
pub async fn batch_after<C: ConnectionTrait>(
    db: &C,
    conversation_id: Option<i64>,
    after: i64,
    size: u64,
) -> Result<Vec<messages::Model>, DbErr> {
    let mut query = messages::Entity::find().filter(messages::Column::Id.gt(after));
    if let Some(conversation_id) = conversation_id {
        query = query.filter(messages::Column::ConversationId.eq(conversation_id));
    }
    query
        .order_by_asc(messages::Column::Id)
        .limit(size)
        .all(db)
        .await
}
