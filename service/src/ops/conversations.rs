//! Starting conversations and reading them back.
//!
//! A conversation view (participants and newest message) is read in a fixed number of
//! statements whatever the number of conversations: one for the conversations, one for all their
//! participants, one for all their newest messages — never one query per conversation. The
//! three run in one read transaction ([`crate::db::begin_read`]), so they see one snapshot: a
//! message or participant added meanwhile is in all of them or in none.

use std::{cmp::Reverse, collections::HashMap};

use entity::{conversations, users};
use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    ServiceError,
    db::{begin_read, begin_write, commit, finish},
    domain::{
        chat::{self, Conversation, Message, NewConversation},
        users::UserSummary,
    },
    error::DbFailure,
    repo::{self, conversations::ConversationSet},
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

/// The most people one conversation may start with, the creator included. It keeps the
/// participants insert one short statement, far below any bind-parameter limit.
pub const MAX_PARTICIPANTS: usize = 1000;

/// Starts a conversation. The creator always takes part; repeated ids count once; an empty
/// list makes a conversation of one. An unknown participant or product is
/// `NotFound { resource: "user" }` / `"product"`, as the foreign keys report it: the database
/// has the last word, with no racy existence check first.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(
        creator_id = creator_id,
        product_id = new.product_id,
        participants = new.participant_ids.len(),
    )
)]
pub async fn create_conversation(
    db: &DatabaseConnection,
    creator_id: i64,
    new: NewConversation,
) -> Result<Conversation, ServiceError> {
    let mut participant_ids = new.participant_ids;
    participant_ids.push(creator_id);
    participant_ids.sort_unstable();
    participant_ids.dedup();
    if participant_ids.len() > MAX_PARTICIPANTS {
        return Err(ServiceError::validation(
            "participant_ids",
            format!("a conversation starts with at most {MAX_PARTICIPANTS} participants"),
        ));
    }

    with_retry(RetryPolicy::reconnecting(), || {
        create_once(db, creator_id, &new.title, new.product_id, &participant_ids)
    })
    .await
}

async fn create_once(
    db: &DatabaseConnection,
    creator_id: i64,
    title: &chat::Title,
    product_id: Option<i64>,
    participant_ids: &[i64],
) -> Result<Conversation, ServiceError> {
    let txn = begin_write(db).await?;
    let now = chat::now();
    let result = async {
        let conversation = repo::conversations::insert(
            &txn,
            title.clone().into_inner(),
            product_id,
            creator_id,
            now,
        )
        .await
        .map_err(|error| conversation_insert_error(error, creator_id))?;
        repo::conversations::add_participants(&txn, conversation.id, participant_ids, now)
            .await
            .map_err(|error| not_found_on_foreign_key(error, "user"))?;
        let participants =
            repo::conversations::participants_of(&txn, ConversationSet::One(conversation.id))
                .await?;
        Ok((conversation, participants))
    }
    .await;
    let (conversation, participants) = finish(txn, result).await?;

    Ok(assemble(conversation, summaries(&participants), None))
}

/// The conversation insert has two foreign keys: the product, and the creator. PostgreSQL
/// names the one that failed; SQLite does not, and then it is the product, since the creator is
/// the authenticated caller.
fn conversation_insert_error(error: DbErr, creator_id: i64) -> ServiceError {
    match DbFailure::of(&error) {
        DbFailure::ForeignKeyViolation { constraint }
            if constraint.as_deref() == Some("fk_conversations_created_by") =>
        {
            tracing::warn!(creator_id, "a conversation was started by an unknown user");
            ServiceError::NotFound { resource: "user" }
        }
        _ => not_found_on_foreign_key(error, "product"),
    }
}

/// A foreign-key violation means the row referred to does not exist; anything else is as usual.
fn not_found_on_foreign_key(error: DbErr, resource: &'static str) -> ServiceError {
    match DbFailure::of(&error) {
        DbFailure::ForeignKeyViolation { .. } => ServiceError::NotFound { resource },
        _ => ServiceError::from(error),
    }
}

/// The user's conversations, each with its participants and newest message, most recent
/// activity first (its newest message, or its creation when it has none). Three statements,
/// however many conversations; one when there are none.
#[tracing::instrument(level = "info", skip_all, fields(user_id = user_id))]
pub async fn list_conversations(
    db: &DatabaseConnection,
    user_id: i64,
) -> Result<Vec<Conversation>, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || list_once(db, user_id)).await
}

async fn list_once(
    db: &DatabaseConnection,
    user_id: i64,
) -> Result<Vec<Conversation>, ServiceError> {
    let set = ConversationSet::OfParticipant(user_id);
    let txn = begin_read(db).await?;
    let conversations = repo::conversations::find_all(&txn, set).await?;
    if conversations.is_empty() {
        commit(txn).await?;
        return Ok(Vec::new());
    }
    let participants = repo::conversations::participants_of(&txn, set).await?;
    let newest = repo::messages::newest_of(&txn, set).await?;
    commit(txn).await?;

    let mut participants = group_participants(participants);
    let mut newest: HashMap<i64, Message> = newest
        .into_iter()
        .map(|(message, sender)| {
            (
                message.conversation_id,
                Message::from_parts(message, &sender),
            )
        })
        .collect();

    let mut views: Vec<Conversation> = conversations
        .into_iter()
        .map(|conversation| {
            let id = conversation.id;
            assemble(
                conversation,
                participants.remove(&id).unwrap_or_default(),
                newest.remove(&id),
            )
        })
        .collect();
    // Ties (same instant) fall back to the id, newest first, so the order is stable.
    views.sort_by_key(|view| Reverse((view.last_activity(), view.id)));
    Ok(views)
}

/// One conversation the user takes part in. For anyone else it is `NotFound`, exactly as if it
/// did not exist. Three statements, in one read transaction.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(user_id = user_id, conversation_id = conversation_id)
)]
pub async fn get_conversation(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
) -> Result<Conversation, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || {
        get_once(db, user_id, conversation_id)
    })
    .await
}

async fn get_once(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
) -> Result<Conversation, ServiceError> {
    let txn = begin_read(db).await?;
    let result = async {
        let conversation =
            repo::conversations::find_for_participant(&txn, conversation_id, user_id)
                .await?
                .ok_or(ServiceError::NotFound {
                    resource: "conversation",
                })?;
        let set = ConversationSet::One(conversation_id);
        let participants = repo::conversations::participants_of(&txn, set).await?;
        let newest = repo::messages::newest_of(&txn, set)
            .await?
            .into_iter()
            .next();
        Ok((conversation, participants, newest))
    }
    .await;
    let (conversation, participants, newest) = finish(txn, result).await?;
    Ok(assemble(
        conversation,
        summaries(&participants),
        newest.map(|(message, sender)| Message::from_parts(message, &sender)),
    ))
}

/// Participants by conversation id, each list in the user-id order the query returned.
fn group_participants(rows: Vec<(i64, users::Model)>) -> HashMap<i64, Vec<UserSummary>> {
    let mut grouped: HashMap<i64, Vec<UserSummary>> = HashMap::new();
    for (conversation_id, user) in rows {
        grouped
            .entry(conversation_id)
            .or_default()
            .push(UserSummary::from(&user));
    }
    grouped
}

/// The public faces of one conversation's participants, as `participants_of` returns them.
fn summaries(participants: &[(i64, users::Model)]) -> Vec<UserSummary> {
    participants
        .iter()
        .map(|(_, user)| UserSummary::from(user))
        .collect()
}

fn assemble(
    conversation: conversations::Model,
    participants: Vec<UserSummary>,
    last_message: Option<Message>,
) -> Conversation {
    Conversation {
        id: conversation.id,
        title: conversation.title,
        product_id: conversation.product_id,
        created_at: conversation.created_at.to_utc(),
        participants,
        last_message,
    }
}
