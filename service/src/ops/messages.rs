//! Posting messages and paging through a conversation.
//!
//! Only participants may do either; to anyone else the conversation does not exist
//! (`NotFound`), as the API hides it. Pages are keyset-paginated on `(conversation_id, id)`:
//! `before` is the id of the oldest message already seen, so a page costs the same however deep
//! it is, and messages posted meanwhile never shift or repeat what follows.

use sea_orm::DatabaseConnection;

use crate::{
    ServiceError,
    db::{begin_write, finish, reader},
    domain::chat::{self, Message, MessageLimit, MessagePage, NewMessage},
    repo,
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

const CONVERSATION_NOT_FOUND: ServiceError = ServiceError::NotFound {
    resource: "conversation",
};

/// Posts a message. The sender must take part in the conversation; `reply_to_id`, when given,
/// must name a message of the same conversation (else `Validation { field: "reply_to_id" }`).
/// The checks and the insert run in one write transaction, so they see one state.
// The body is what people wrote to each other: it stays out of the span.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(
        sender_id = sender_id,
        conversation_id = conversation_id,
        reply_to_id = new.reply_to_id,
    )
)]
pub async fn post_message(
    db: &DatabaseConnection,
    sender_id: i64,
    conversation_id: i64,
    new: NewMessage,
) -> Result<Message, ServiceError> {
    with_retry(RetryPolicy::reconnecting(), || {
        post_once(db, sender_id, conversation_id, &new)
    })
    .await
}

async fn post_once(
    db: &DatabaseConnection,
    sender_id: i64,
    conversation_id: i64,
    new: &NewMessage,
) -> Result<Message, ServiceError> {
    let txn = begin_write(db).await?;
    let result = async {
        let sender = repo::conversations::find_participant(&txn, conversation_id, sender_id)
            .await?
            .ok_or(CONVERSATION_NOT_FOUND)?;
        if let Some(reply_to_id) = new.reply_to_id
            && !repo::messages::is_in_conversation(&txn, reply_to_id, conversation_id).await?
        {
            return Err(ServiceError::validation(
                "reply_to_id",
                "must be a message of the same conversation",
            ));
        }
        let message = repo::messages::insert(
            &txn,
            conversation_id,
            sender_id,
            new.body.clone().into_inner(),
            new.reply_to_id,
            chat::now(),
        )
        .await?;
        Ok((sender, message))
    }
    .await;
    let (sender, message) = finish(txn, result).await?;
    Ok(Message::from_parts(message, &sender))
}

/// A page of the conversation's messages, newest first: at most `limit`, only those with an id
/// below `before` when it is given, each with its sender. One statement whatever `limit`: the
/// page, with the participant check inside it (`repo::messages::page`); only an empty page
/// costs a second, to tell a stranger (`NotFound`) from the end of the conversation. One extra
/// row is fetched to learn whether an older message exists, so `next_before` is `None` on the
/// last page even when that page is full. A single statement sees one state, so no
/// transaction is opened around it.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(
        user_id = user_id,
        conversation_id = conversation_id,
        limit = limit.get(),
        before = before,
    )
)]
pub async fn list_messages(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
    limit: MessageLimit,
    before: Option<i64>,
) -> Result<MessagePage, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || {
        page_once(db, user_id, conversation_id, limit, before)
    })
    .await
}

async fn page_once(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
    limit: MessageLimit,
    before: Option<i64>,
) -> Result<MessagePage, ServiceError> {
    let db = reader(db);
    let mut rows =
        repo::messages::page(db, conversation_id, user_id, before, limit.get() + 1).await?;
    // Two single statements, not a transaction: if the reader left in between, an empty page
    // is all they are told, which is what they would have seen a moment earlier.
    if rows.is_empty() && !repo::conversations::is_participant(db, conversation_id, user_id).await?
    {
        return Err(CONVERSATION_NOT_FOUND);
    }
    let older_exists = rows.len() as u64 > limit.get();
    rows.truncate(limit.get() as usize);
    let messages: Vec<Message> = rows.into_iter().map(Message::from_page_row).collect();
    let next_before = if older_exists {
        messages.last().map(|oldest| oldest.id)
    } else {
        None
    };
    Ok(MessagePage {
        messages,
        next_before,
    })
}
