//! Starting conversations and reading them back.
//!
//! A conversation view (participants and newest message) is read in a fixed number of
//! statements whatever the number of conversations: one for the conversations each joined to its
//! newest message, one for all their participants — never one query per conversation. The two
//! run in one read transaction ([`crate::db::begin_read`]), so they see one snapshot: a
//! participant added meanwhile is in both or in neither.

use std::{cmp::Reverse, collections::HashMap};

use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    ServiceError,
    db::{begin_read, begin_write, commit, finish},
    domain::{
        chat::{self, Conversation, Message, NewConversation},
        users::UserSummary,
    },
    error::DbFailure,
    repo::{
        self,
        conversations::{ConversationRow, ConversationSet, ParticipantRow},
    },
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
            repo::conversations::participant_summaries(&txn, ConversationSet::One(conversation.id))
                .await?;
        Ok((conversation, participants))
    }
    .await;
    let (conversation, participants) = finish(txn, result).await?;

    Ok(Conversation {
        id: conversation.id,
        title: conversation.title,
        product_id: conversation.product_id,
        created_at: conversation.created_at.to_utc(),
        participants: participants.into_iter().map(summary).collect(),
        last_message: None,
    })
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
/// activity first (its newest message, or its creation when it has none). Two statements,
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
    let conversations = repo::conversations::with_newest_message(&txn, set, user_id).await?;
    if conversations.is_empty() {
        commit(txn).await?;
        return Ok(Vec::new());
    }
    let participants = repo::conversations::participant_summaries(&txn, set).await?;
    commit(txn).await?;

    let mut participants = group_participants(participants);
    let mut views: Vec<Conversation> = conversations
        .into_iter()
        .map(|row| {
            let participants = participants.remove(&row.id).unwrap_or_default();
            assemble(row, participants)
        })
        .collect();
    // Ties (same instant) fall back to the id, newest first, so the order is stable.
    views.sort_by_key(|view| Reverse((view.last_activity(), view.id)));
    Ok(views)
}

/// One conversation the user takes part in. For anyone else it is `NotFound`, exactly as if it
/// did not exist. Two statements (the conversation with its newest message, then its
/// participants), in one read transaction.
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
    let set = ConversationSet::One(conversation_id);
    let txn = begin_read(db).await?;
    let result = async {
        let conversation = repo::conversations::with_newest_message(&txn, set, user_id)
            .await?
            .pop()
            .ok_or(ServiceError::NotFound {
                resource: "conversation",
            })?;
        let participants = repo::conversations::participant_summaries(&txn, set).await?;
        Ok((conversation, participants))
    }
    .await;
    let (conversation, participants) = finish(txn, result).await?;
    Ok(assemble(
        conversation,
        participants.into_iter().map(summary).collect(),
    ))
}

/// Participants by conversation id, each list in the user-id order the query returned.
fn group_participants(rows: Vec<ParticipantRow>) -> HashMap<i64, Vec<UserSummary>> {
    let mut grouped: HashMap<i64, Vec<UserSummary>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.conversation_id)
            .or_default()
            .push(summary(row));
    }
    grouped
}

fn summary(row: ParticipantRow) -> UserSummary {
    UserSummary {
        id: row.id,
        username: row.username,
        display_name: row.display_name,
    }
}

/// The view of a conversation from its row (with its newest message, if any) and participants.
fn assemble(row: ConversationRow, participants: Vec<UserSummary>) -> Conversation {
    let last_message = match (
        row.message_id,
        row.message_body,
        row.message_created_at,
        row.sender_id,
        row.sender_username,
        row.sender_display_name,
    ) {
        (
            Some(id),
            Some(body),
            Some(created_at),
            Some(sender_id),
            Some(username),
            Some(display_name),
        ) => Some(Message {
            id,
            conversation_id: row.id,
            sender: UserSummary {
                id: sender_id,
                username,
                display_name,
            },
            body,
            reply_to_id: row.message_reply_to_id,
            created_at: created_at.to_utc(),
        }),
        _ => None,
    };
    Conversation {
        id: row.id,
        title: row.title,
        product_id: row.product_id,
        created_at: row.created_at.to_utc(),
        participants,
        last_message,
    }
}
