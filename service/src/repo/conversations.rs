//! Conversations and their participants.
//!
//! Reads that cover several conversations describe the set to the database ([`ConversationSet`])
//! instead of listing its ids, so "every conversation of user 7" is one subquery whatever the
//! count, and no statement ever grows past the bind-parameter limit.

use chrono::{DateTime, Utc};
use entity::{conversation_participants as participants, conversations, messages, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait, Set,
    prelude::DateTimeWithTimeZone,
    sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement},
};

/// A set of conversations, as a condition the database evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationSet {
    /// The conversation with this id.
    One(i64),
    /// Every conversation this user takes part in.
    OfParticipant(i64),
}

impl ConversationSet {
    /// The condition "`conversation_id` names a conversation of this set".
    pub fn contains(self, conversation_id: impl ColumnTrait) -> Expr {
        match self {
            ConversationSet::One(id) => conversation_id.eq(id),
            ConversationSet::OfParticipant(user_id) => conversation_id.in_subquery(
                Query::select()
                    .column(participants::Column::ConversationId)
                    .from(participants::Entity)
                    .and_where(participants::Column::UserId.eq(user_id))
                    .to_owned(),
            ),
        }
    }
}

/// Inserts a conversation and returns it as stored.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    title: String,
    product_id: Option<i64>,
    created_by: i64,
    created_at: DateTime<Utc>,
) -> Result<conversations::Model, DbErr> {
    conversations::ActiveModel {
        title: Set(title),
        product_id: Set(product_id),
        created_by: Set(created_by),
        created_at: Set(created_at.into()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Adds `user_ids` to a conversation in one statement. The ids must be distinct.
pub async fn add_participants<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    user_ids: &[i64],
    joined_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let rows = user_ids.iter().map(|&user_id| participants::ActiveModel {
        conversation_id: Set(conversation_id),
        user_id: Set(user_id),
        joined_at: Set(joined_at.into()),
    });
    participants::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A conversation with its newest message and that message's sender, as the conversation views
/// show them: only those columns, one row per conversation. The message columns are all `None`
/// for a conversation without messages.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ConversationRow {
    pub id: i64,
    pub title: String,
    pub product_id: Option<i64>,
    pub created_at: DateTimeWithTimeZone,
    pub message_id: Option<i64>,
    pub message_body: Option<String>,
    pub message_reply_to_id: Option<i64>,
    pub message_created_at: Option<DateTimeWithTimeZone>,
    pub sender_id: Option<i64>,
    pub sender_username: Option<String>,
    pub sender_display_name: Option<String>,
}

/// Every conversation of the set that `reader_id` takes part in, each with its newest message,
/// in one statement and in no particular order:
///
/// ```sql
/// SELECT conversations.id, …, messages.id AS message_id, …, users.username AS sender_username, …
/// FROM conversations
/// LEFT JOIN messages ON messages.id = (SELECT MAX(newest.id) FROM messages AS newest
///                                      WHERE newest.conversation_id = conversations.id)
/// LEFT JOIN users ON messages.sender_id = users.id
/// WHERE <conversations.id is in the set> AND <reader_id takes part>
/// ```
///
/// The correlated `MAX` is answered from the end of the conversation's `(conversation_id, id)`
/// index range, so the cost grows with the number of conversations, not of messages. The join
/// needs that custom `ON`, so it is added to the underlying `SelectStatement`.
pub async fn with_newest_message<C: ConnectionTrait>(
    db: &C,
    set: ConversationSet,
    reader_id: i64,
) -> Result<Vec<ConversationRow>, DbErr> {
    let newest_id = newest_message_id();
    let mut query = conversations::Entity::find()
        .select_only()
        .columns([
            conversations::Column::Id,
            conversations::Column::Title,
            conversations::Column::ProductId,
            conversations::Column::CreatedAt,
        ])
        .column_as(messages::Column::Id, "message_id")
        .column_as(messages::Column::Body, "message_body")
        .column_as(messages::Column::ReplyToId, "message_reply_to_id")
        .column_as(messages::Column::CreatedAt, "message_created_at")
        .column_as(users::Column::Id, "sender_id")
        .column_as(users::Column::Username, "sender_username")
        .column_as(users::Column::DisplayName, "sender_display_name")
        .filter(set.contains(conversations::Column::Id));
    if set != ConversationSet::OfParticipant(reader_id) {
        query = query
            .filter(ConversationSet::OfParticipant(reader_id).contains(conversations::Column::Id));
    }
    QueryTrait::query(&mut query).join(
        JoinType::LeftJoin,
        messages::Entity,
        Expr::col((messages::Entity, messages::Column::Id)).eq(newest_id),
    );
    query
        .join(JoinType::LeftJoin, messages::Relation::Users.def())
        .into_model::<ConversationRow>()
        .all(db)
        .await
}

/// The correlated subquery `(SELECT MAX(newest.id) FROM messages AS newest WHERE
/// newest.conversation_id = conversations.id)`: the newest message of the enclosing query's
/// conversation, one probe of the end of its `(conversation_id, id)` index range. A
/// `SelectStatement` is an expression, so it goes where a value would.
pub fn newest_message_id() -> SelectStatement {
    let newest = Alias::new("newest");
    Query::select()
        .expr(Expr::col((newest.clone(), messages::Column::Id)).max())
        .from_as(messages::Entity, newest.clone())
        .and_where(
            Expr::col((newest, messages::Column::ConversationId))
                .equals((conversations::Entity, conversations::Column::Id)),
        )
        .to_owned()
}

/// A participant of a conversation, with what the views show of them.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ParticipantRow {
    pub conversation_id: i64,
    pub id: i64,
    pub username: String,
    pub display_name: String,
}

/// The participants of every conversation of the set, with only the columns a view shows,
/// ordered by conversation and then user id: one statement, however many conversations.
pub async fn participant_summaries<C: ConnectionTrait>(
    db: &C,
    set: ConversationSet,
) -> Result<Vec<ParticipantRow>, DbErr> {
    participants::Entity::find()
        .select_only()
        .column(participants::Column::ConversationId)
        .columns([
            users::Column::Id,
            users::Column::Username,
            users::Column::DisplayName,
        ])
        .inner_join(users::Entity)
        .filter(set.contains(participants::Column::ConversationId))
        .order_by_asc(participants::Column::ConversationId)
        .order_by_asc(participants::Column::UserId)
        .into_model::<ParticipantRow>()
        .all(db)
        .await
}

/// The user, if they take part in the conversation.
pub async fn find_participant<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    user_id: i64,
) -> Result<Option<users::Model>, DbErr> {
    let found = participants::Entity::find_by_id((conversation_id, user_id))
        .find_both_related(users::Entity)
        .one(db)
        .await?;
    Ok(found.map(|(_, user)| user))
}

/// Whether the user takes part in the conversation.
pub async fn is_participant<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    user_id: i64,
) -> Result<bool, DbErr> {
    let found = participants::Entity::find_by_id((conversation_id, user_id))
        .one(db)
        .await?;
    Ok(found.is_some())
}
