//! Running a whole transaction again when the database aborted it to stay consistent.
