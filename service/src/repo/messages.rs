//! Messages.
//!
//! Every read here walks the `(conversation_id, id)` index: a conversation's page is a backward
//! range scan on it (keyset pagination: `id < before`, never OFFSET), and "the newest message of
//! each conversation" is one `MAX(id)` probe of it per conversation, all inside one statement.

use chrono::{DateTime, Utc};
use entity::{conversations, messages, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SelectTwoRequired, Set,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use super::conversations::ConversationSet;

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

/// The query behind a page: the conversation's messages older than `before` (all when `None`),
/// newest first, at most `fetch` of them, each joined to its sender. Public so that a test can
/// `EXPLAIN` exactly the statement the application runs.
pub fn page_query(
    conversation_id: i64,
    before: Option<i64>,
    fetch: u64,
) -> SelectTwoRequired<messages::Entity, users::Entity> {
    let mut query =
        messages::Entity::find().filter(messages::Column::ConversationId.eq(conversation_id));
    if let Some(before) = before {
        query = query.filter(messages::Column::Id.lt(before));
    }
    query
        .order_by_desc(messages::Column::Id)
        .limit(fetch)
        .find_both_related(users::Entity)
}

/// Runs [`page_query`]: one statement, however large `fetch` is.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    before: Option<i64>,
    fetch: u64,
) -> Result<Vec<(messages::Model, users::Model)>, DbErr> {
    page_query(conversation_id, before, fetch).all(db).await
}

/// The newest message of each conversation of the set that has one, with its sender, in one
/// statement:
///
/// ```sql
/// SELECT messages.*, users.* FROM messages JOIN users ON users.id = messages.sender_id
/// WHERE messages.id IN (
///     SELECT (SELECT MAX(newest.id) FROM messages AS newest
///             WHERE newest.conversation_id = conversations.id)
///     FROM conversations WHERE <conversations.id is in the set>)
/// ```
///
/// The correlated `MAX` is answered from the end of the conversation's `(conversation_id, id)`
/// index range, so the cost grows with the number of conversations, not of messages — unlike
/// `GROUP BY conversation_id` or a window function, which read every message.
pub async fn newest_of<C: ConnectionTrait>(
    db: &C,
    set: ConversationSet,
) -> Result<Vec<(messages::Model, users::Model)>, DbErr> {
    let newest = Alias::new("newest");
    let newest_id = Query::select()
        .expr(Expr::col((newest.clone(), messages::Column::Id)).max())
        .from_as(messages::Entity, newest.clone())
        .and_where(
            Expr::col((newest, messages::Column::ConversationId))
                .equals((conversations::Entity, conversations::Column::Id)),
        )
        .to_owned();
    let newest_ids = Query::select()
        .expr(newest_id)
        .from(conversations::Entity)
        .and_where(set.contains(conversations::Column::Id))
        .to_owned();
    messages::Entity::find()
        .filter(messages::Column::Id.in_subquery(newest_ids))
        .find_both_related(users::Entity)
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
