//! Conversations and their participants.
//!
//! Reads that cover several conversations describe the set to the database ([`ConversationSet`])
//! instead of listing its ids, so "every conversation of user 7" is one subquery whatever the
//! count, and no statement ever grows past the bind-parameter limit.

use chrono::{DateTime, Utc};
use entity::{conversation_participants as participants, conversations, users};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
    sea_query::{Expr, Query},
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

/// The conversation, if it exists and `user_id` takes part in it; `None` either way otherwise,
/// so that a stranger cannot tell the two apart.
pub async fn find_for_participant<C: ConnectionTrait>(
    db: &C,
    conversation_id: i64,
    user_id: i64,
) -> Result<Option<conversations::Model>, DbErr> {
    conversations::Entity::find_by_id(conversation_id)
        .filter(ConversationSet::OfParticipant(user_id).contains(conversations::Column::Id))
        .one(db)
        .await
}

/// Every conversation of the set, in no particular order.
pub async fn find_all<C: ConnectionTrait>(
    db: &C,
    set: ConversationSet,
) -> Result<Vec<conversations::Model>, DbErr> {
    conversations::Entity::find()
        .filter(set.contains(conversations::Column::Id))
        .all(db)
        .await
}

/// The participants of every conversation of the set, as `(conversation id, user)`, ordered by
/// conversation and then user id: one statement, however many conversations.
pub async fn participants_of<C: ConnectionTrait>(
    db: &C,
    set: ConversationSet,
) -> Result<Vec<(i64, users::Model)>, DbErr> {
    let rows = participants::Entity::find()
        .find_both_related(users::Entity)
        .filter(set.contains(participants::Column::ConversationId))
        .order_by_asc(participants::Column::ConversationId)
        .order_by_asc(participants::Column::UserId)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(participant, user)| (participant.conversation_id, user))
        .collect())
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
