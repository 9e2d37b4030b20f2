//! Orders and their lines.
