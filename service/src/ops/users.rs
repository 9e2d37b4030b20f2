//! Operations on users.
