//! The products repository.
