//! The transfers repository.
