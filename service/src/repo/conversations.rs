//! The conversations repository.
