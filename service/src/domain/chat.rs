//! Conversations and messages as the rest of the application sees them, and the inputs that
//! create and page through them. Each input newtype refuses bad values when it is built, so an
//! operation that receives a [`Title`], a [`MessageBody`] or a [`MessageLimit`] never checks it
//! again. Lengths are counted in Unicode code points (100 × 😀 is 100 characters), and accepted
//! text is kept exactly as sent: nothing is trimmed or normalised.

use chrono::{DateTime, SubsecRound, Utc};

use super::users::UserSummary;
use crate::ServiceError;

/// The current time at the precision every backend keeps: PostgreSQL stores microseconds,
/// SQLite would keep nanoseconds. Truncating before writing makes a message read back later
/// equal to the one returned when it was created, on either backend.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Checks that `text` holds `1..=max` code points and no NUL (which PostgreSQL cannot store).
fn checked_text(field: &'static str, text: String, max: usize) -> Result<String, ServiceError> {
    if text.is_empty() {
        return Err(ServiceError::validation(field, "must not be empty"));
    }
    if text.contains('\0') {
        return Err(ServiceError::validation(
            field,
            "must not contain the NUL character",
        ));
    }
    // `chars()` counts code points, the unit the API promises; `len()` would count UTF-8 bytes.
    if text.chars().count() > max {
        return Err(ServiceError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(text)
}

/// A conversation's title: 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: impl Into<String>) -> Result<Self, ServiceError> {
        checked_text("title", text.into(), Self::MAX_CHARS).map(Title)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A message's body: 1 to 4,000 characters, stored exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(text: impl Into<String>) -> Result<Self, ServiceError> {
        checked_text("body", text.into(), Self::MAX_CHARS).map(MessageBody)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// How many messages one page holds: 1 to 100, 10 when the caller does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimit(u16);

impl MessageLimit {
    pub const MAX: u16 = 100;
    pub const DEFAULT: u16 = 10;

    /// Parses the `limit` query parameter; `None` (not given) is the default.
    pub fn parse(limit: Option<i64>) -> Result<Self, ServiceError> {
        match limit {
            None => Ok(Self::default()),
            Some(n) => u16::try_from(n)
                .ok()
                .filter(|n| (1..=Self::MAX).contains(n))
                .map(MessageLimit)
                .ok_or_else(|| {
                    ServiceError::validation(
                        "limit",
                        format!("must be between 1 and {}", Self::MAX),
                    )
                }),
        }
    }

    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

impl Default for MessageLimit {
    fn default() -> Self {
        MessageLimit(Self::DEFAULT)
    }
}

/// What it takes to start a conversation. The creator is added by the operation.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub title: Title,
    /// The other people in it; repeats, and the creator's own id, count once.
    pub participant_ids: Vec<i64>,
    /// The product the conversation is about, if any.
    pub product_id: Option<i64>,
}

/// What it takes to post a message.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub body: MessageBody,
    /// The message this one answers; it must belong to the same conversation.
    pub reply_to_id: Option<i64>,
}

/// A conversation with everyone in it and its newest message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: i64,
    pub title: String,
    pub product_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Ordered by user id.
    pub participants: Vec<UserSummary>,
    pub last_message: Option<Message>,
}

impl Conversation {
    /// When anything last happened in it: its newest message, or else its creation.
    pub fn last_activity(&self) -> DateTime<Utc> {
        self.last_message
            .as_ref()
            .map_or(self.created_at, |message| message.created_at)
    }
}

/// A message with its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub sender: UserSummary,
    pub body: String,
    pub reply_to_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl Message {
    pub(crate) fn from_parts(
        message: entity::messages::Model,
        sender: &entity::users::Model,
    ) -> Self {
        Message {
            id: message.id,
            conversation_id: message.conversation_id,
            sender: UserSummary::from(sender),
            body: message.body,
            reply_to_id: message.reply_to_id,
            created_at: message.created_at.to_utc(),
        }
    }

    pub(crate) fn from_page_row(row: crate::repo::messages::PageRow) -> Self {
        Message {
            id: row.id,
            conversation_id: row.conversation_id,
            sender: UserSummary {
                id: row.sender_id,
                username: row.sender_username,
                display_name: row.sender_display_name,
            },
            body: row.body,
            reply_to_id: row.reply_to_id,
            created_at: row.created_at.to_utc(),
        }
    }
}

/// One page of a conversation's messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// The `before` that fetches the next older page, or `None` when no older message exists.
    pub next_before: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_field<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> &'static str {
        match result {
            Err(ServiceError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_title_is_counted_in_code_points_not_bytes() {
        let emoji = "😀".repeat(200);
        assert_eq!(
            Title::parse(emoji.clone()).map(Title::into_inner).ok(),
            Some(emoji)
        );
        assert_eq!(refused_field(Title::parse("😀".repeat(201))), "title");
    }

    #[test]
    fn bad_titles_are_refused_by_field_name() {
        for bad in ["", "a\0b"] {
            assert_eq!(refused_field(Title::parse(bad)), "title", "{bad:?}");
        }
    }

    #[test]
    fn a_body_is_kept_exactly_as_sent() {
        let sent = "  padded, \"quoted\", back\\slash, tab\tand\nnewline  ";
        assert_eq!(
            MessageBody::parse(sent).map(MessageBody::into_inner).ok(),
            Some(sent.to_owned())
        );
    }

    #[test]
    fn a_body_may_hold_4000_characters_but_not_4001() {
        assert!(MessageBody::parse("x".repeat(4000)).is_ok());
        assert_eq!(refused_field(MessageBody::parse("x".repeat(4001))), "body");
        assert_eq!(
            refused_field(MessageBody::parse("x".repeat(10_000))),
            "body"
        );
    }

    #[test]
    fn empty_bodies_and_nul_characters_are_refused() {
        for bad in ["", "\0", "before\0after"] {
            assert_eq!(refused_field(MessageBody::parse(bad)), "body", "{bad:?}");
        }
    }

    #[test]
    fn a_missing_limit_is_ten_and_limits_outside_1_to_100_are_refused() {
        assert_eq!(
            MessageLimit::parse(None).map(MessageLimit::get).ok(),
            Some(10)
        );
        assert_eq!(
            MessageLimit::parse(Some(1)).map(MessageLimit::get).ok(),
            Some(1)
        );
        assert_eq!(
            MessageLimit::parse(Some(100)).map(MessageLimit::get).ok(),
            Some(100)
        );
        for bad in [0, -1, 101, i64::MAX, i64::MIN] {
            assert_eq!(
                refused_field(MessageLimit::parse(Some(bad))),
                "limit",
                "{bad}"
            );
        }
    }
}
