//! The messages repository.
