//! Operations on money.
