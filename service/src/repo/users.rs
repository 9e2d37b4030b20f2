//! The users repository.
