//! The accounts repository.
