//! Conversations and their messages: `/conversations…`, every endpoint authenticated.
//!
//! To anyone who does not take part, a conversation does not exist: reading it, listing its
//! messages or posting to it is 404 `not_found`, exactly as for an id that names nothing. Each
//! handler calls one operation of [`service::ops`], which decides how it reaches the database:
//! a write in one transaction, the conversation views (two statements) in one read-only
//! transaction so that both see one snapshot, a page of messages as one statement with none.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use service::{
    domain::{
        chat::{self, MessageBody, MessageLimit, NewConversation, NewMessage, Title},
        users::UserSummary,
    },
    ops,
};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, AppState,
    auth::AuthUser,
    extract::{Integer, Json, Path, Query},
    read_after::{ReadAfter, ReadAfterHeader},
    schemas,
};

/// RFC 3339 in UTC, with microseconds: the precision every backend keeps.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The body of `POST /conversations`. Unknown fields are refused (422), so a misspelt optional
/// field is not silently ignored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateConversation {
    #[schema(schema_with = schemas::title)]
    title: String,
    #[schema(schema_with = schemas::participant_ids)]
    participant_ids: Vec<Integer>,
    #[serde(default)]
    #[schema(schema_with = schemas::conversation_product_id)]
    product_id: Option<Integer>,
}

/// The body of `POST /conversations/{id}/messages`. Unknown fields are refused (422).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostMessage {
    #[schema(schema_with = schemas::message_body)]
    body: String,
    #[serde(default)]
    #[schema(schema_with = schemas::reply_to_id)]
    reply_to_id: Option<Integer>,
}

/// The query string of `GET /conversations/{id}/messages`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    #[param(schema_with = schemas::message_limit)]
    limit: Option<i64>,
    #[param(schema_with = schemas::before)]
    before: Option<i64>,
}

/// A person as shown next to a conversation or a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Person {
    id: i64,
    #[schema(example = "ann")]
    username: String,
    #[schema(example = "Ann Lee")]
    display_name: String,
}

impl From<UserSummary> for Person {
    fn from(user: UserSummary) -> Self {
        Person {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
        }
    }
}

/// A message with its sender.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MessageView {
    id: i64,
    conversation_id: i64,
    sender: Person,
    /// Exactly as sent.
    body: String,
    reply_to_id: Option<i64>,
    /// RFC 3339, UTC.
    #[schema(example = "2026-11-21T09:30:00.000000Z")]
    created_at: String,
}

impl From<chat::Message> for MessageView {
    fn from(message: chat::Message) -> Self {
        MessageView {
            id: message.id,
            conversation_id: message.conversation_id,
            sender: message.sender.into(),
            body: message.body,
            reply_to_id: message.reply_to_id,
            created_at: rfc3339(message.created_at),
        }
    }
}

/// A conversation with everyone in it and its newest message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ConversationView {
    id: i64,
    title: String,
    product_id: Option<i64>,
    /// RFC 3339, UTC.
    #[schema(example = "2026-11-21T09:30:00.000000Z")]
    created_at: String,
    /// Ordered by user id; the caller is always one of them.
    participants: Vec<Person>,
    /// The newest message, or null when there is none yet.
    last_message: Option<MessageView>,
}

impl From<chat::Conversation> for ConversationView {
    fn from(conversation: chat::Conversation) -> Self {
        ConversationView {
            id: conversation.id,
            title: conversation.title,
            product_id: conversation.product_id,
            created_at: rfc3339(conversation.created_at),
            participants: conversation
                .participants
                .into_iter()
                .map(Person::from)
                .collect(),
            last_message: conversation.last_message.map(MessageView::from),
        }
    }
}

/// The caller's conversations, most recent activity first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ConversationList {
    conversations: Vec<ConversationView>,
}

/// One page of messages, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MessagePageView {
    messages: Vec<MessageView>,
    /// The `before` for the next older page, or null when no older message exists.
    next_before: Option<i64>,
}

/// Starts a conversation; the caller always takes part.
#[utoipa::path(
    post,
    path = "/conversations",
    tag = "conversations",
    request_body = CreateConversation,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The conversation, with no message yet.", body = ConversationView),
        (status = 404, description = "`not_found`: an unknown participant or product.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn create_conversation(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(request): Json<CreateConversation>,
) -> Result<(StatusCode, Json<ConversationView>), ApiError> {
    let new = NewConversation {
        title: Title::parse(request.title)?,
        participant_ids: request.participant_ids.into_iter().map(|id| id.0).collect(),
        product_id: request.product_id.map(|id| id.0),
    };
    let conversation = ops::conversations::create_conversation(&state.db, user.id, new).await?;
    Ok((StatusCode::CREATED, Json(conversation.into())))
}

/// The caller's conversations, each with its participants and newest message, most recent
/// activity first. A fixed number of SQL statements, however many conversations.
#[utoipa::path(
    get,
    path = "/conversations",
    tag = "conversations",
    params(ReadAfterHeader),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's conversations.", body = ConversationList)),
)]
pub(crate) async fn list_conversations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ReadAfter(after): ReadAfter,
) -> Result<Json<ConversationList>, ApiError> {
    let conversations = state
        .reads
        .read(after, |db| {
            ops::conversations::list_conversations(db, user.id)
        })
        .await?;
    Ok(Json(ConversationList {
        conversations: conversations.into_iter().map(Into::into).collect(),
    }))
}

/// One conversation the caller takes part in; any other is 404, as if it did not exist.
#[utoipa::path(
    get,
    path = "/conversations/{id}",
    tag = "conversations",
    params(ReadAfterHeader, ("id" = i64, Path, description = "The conversation's id.")),
    security(("bearer" = [])),
    responses((status = 200, description = "The conversation.", body = ConversationView)),
)]
pub(crate) async fn get_conversation(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ReadAfter(after): ReadAfter,
    Path(id): Path<i64>,
) -> Result<Json<ConversationView>, ApiError> {
    let conversation = state
        .reads
        .read(after, |db| {
            ops::conversations::get_conversation(db, user.id, id)
        })
        .await?;
    Ok(Json(conversation.into()))
}

/// Posts a message to a conversation the caller takes part in.
#[utoipa::path(
    post,
    path = "/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = i64, Path, description = "The conversation's id.")),
    request_body = PostMessage,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The message as stored.", body = MessageView),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a bad body, or a `reply_to_id` that is not a message of this conversation.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn post_message(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(request): Json<PostMessage>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let new = NewMessage {
        body: MessageBody::parse(request.body)?,
        reply_to_id: request.reply_to_id.map(|id| id.0),
    };
    let message = ops::messages::post_message(&state.db, user.id, id, new).await?;
    Ok((StatusCode::CREATED, Json(message.into())))
}

/// A page of a conversation's messages, newest first (keyset pagination on `before`). A fixed
/// number of SQL statements, whatever the limit.
#[utoipa::path(
    get,
    path = "/conversations/{id}/messages",
    tag = "conversations",
    params(ReadAfterHeader, ("id" = i64, Path, description = "The conversation's id."), MessagesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of messages.", body = MessagePageView),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = crate::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `limit` outside 1 to 100, `before` below 1, or a bad `x-read-after-lsn`.", body = crate::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ReadAfter(after): ReadAfter,
    Path(id): Path<i64>,
    Query(query): Query<MessagesQuery>,
) -> Result<Json<MessagePageView>, ApiError> {
    let limit = MessageLimit::parse(query.limit)?;
    if query.before.is_some_and(|before| before < 1) {
        return Err(service::ServiceError::validation(
            "before",
            "must be a message id (1 or more)",
        )
        .into());
    }
    let page = state
        .reads
        .read(after, |db| {
            ops::messages::list_messages(db, user.id, id, limit, query.before)
        })
        .await?;
    Ok(Json(MessagePageView {
        messages: page.messages.into_iter().map(Into::into).collect(),
        next_before: page.next_before,
    }))
}
