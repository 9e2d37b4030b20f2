//! Conversations and messages.
