//! Operations on conversations.
