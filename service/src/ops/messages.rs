//! Operations on messages.
