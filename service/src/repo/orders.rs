//! The orders repository.
