//! The service's one error type, in domain words, and the classification of database failures
//! that produces it.
//!
//! Database failures are recognised by what the driver reports structurally — the SQLSTATE (or
//! SQLite's extended result code) and the name of the violated constraint — never by message
//! text, except where a backend reports nothing better: SQLite names the *columns* of a violated
//! unique constraint, and MySQL names the key only inside its message.

use std::error::Error as StdError;

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Everything a business operation can fail with. Each variant but the last two is something
/// the caller can act on; `Unavailable` and `Unexpected` are the system's fault.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that breaks a rule of the domain; `field` names the offending input.
    #[error("{field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    /// The thing asked for does not exist, or the caller may not know that it does.
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("invalid or missing credentials")]
    Unauthenticated,
    #[error("That email is already registered.")]
    EmailTaken,
    #[error("That username is already taken.")]
    UsernameTaken,
    #[error("That SKU is already in use.")]
    SkuTaken,
    #[error("Insufficient stock for product {product_id}")]
    InsufficientStock { product_id: i64 },
    #[error("Insufficient funds.")]
    InsufficientFunds,
    /// The caller is not a participant of the conversation they addressed.
    #[error("not a participant of conversation {conversation_id}")]
    NotParticipant { conversation_id: i64 },
    #[error("This order cannot be cancelled: {reason}.")]
    OrderNotCancellable { reason: &'static str },
    #[error("This idempotency key was already used with a different request.")]
    IdempotencyKeyReused,
    /// The database kept aborting the transaction to stay consistent (serialization failures,
    /// deadlocks, a busy SQLite file) and the retries ran out.
    #[error("the database was too contended to complete the operation; try again")]
    Contended(#[source] DbErr),
    /// The database cannot be reached, the pool has no free connection, or a statement timed out.
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// A failure nobody can act on but an operator; `context` says what was being done.
    #[error("{context}")]
    Unexpected {
        context: &'static str,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl ServiceError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Validation {
            field,
            message: message.into(),
        }
    }

    /// Whether running the whole transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ServiceError::Contended(_))
    }
}

impl From<DbErr> for ServiceError {
    /// The default mapping for a database error that no caller claimed as a domain error.
    fn from(error: DbErr) -> Self {
        match DbFailure::of(&error) {
            DbFailure::SerializationFailure | DbFailure::Deadlock | DbFailure::Busy => {
                ServiceError::Contended(error)
            }
            DbFailure::Unavailable | DbFailure::QueryCanceled => ServiceError::Unavailable(error),
            _ => ServiceError::Unexpected {
                context: "database error",
                source: Box::new(error),
            },
        }
    }
}

/// Adds the "what were we doing" to an unexpected error, keeping the cause chain.
pub trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, ServiceError>;
}

impl<T, E: StdError + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, ServiceError> {
        self.map_err(|source| ServiceError::Unexpected {
            context,
            source: Box::new(source),
        })
    }
}

/// A unique constraint, as each backend identifies it: PostgreSQL and MySQL by name, SQLite by
/// its `table.column` list.
#[derive(Debug, Clone, Copy)]
pub struct UniqueConstraint {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

/// What kind of failure a database error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFailure {
    /// SQLSTATE 23505. `constraint` is the constraint name (PostgreSQL, MySQL), or the comma-separated
    /// list of `table.column` that SQLite reports.
    UniqueViolation {
        constraint: Option<String>,
    },
    /// SQLSTATE 23503.
    ForeignKeyViolation {
        constraint: Option<String>,
    },
    /// SQLSTATE 23514.
    CheckViolation {
        constraint: Option<String>,
    },
    /// SQLSTATE 23502.
    NotNullViolation,
    /// 40001: a serializable transaction could not be ordered; run it again.
    SerializationFailure,
    /// 40P01: two transactions waited on each other; one was chosen to fail.
    Deadlock,
    /// SQLite's `SQLITE_BUSY`/`SQLITE_LOCKED`: another connection held the file too long.
    Busy,
    /// 57014: cancelled, usually by `statement_timeout`.
    QueryCanceled,
    /// No connection: the server is down, unreachable, or the pool timed out.
    Unavailable,
    Other,
}

impl DbFailure {
    pub fn of(error: &DbErr) -> DbFailure {
        match error {
            DbErr::ConnectionAcquire(_) => DbFailure::Unavailable,
            DbErr::Conn(_) => DbFailure::Unavailable,
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                classify_sqlx(e)
            }
            _ => DbFailure::Other,
        }
    }

    /// Whether this is a violation of `unique`, on whichever backend produced it.
    pub fn violates(&self, unique: &UniqueConstraint) -> bool {
        let DbFailure::UniqueViolation {
            constraint: Some(reported),
        } = self
        else {
            return false;
        };
        if reported == unique.name {
            return true;
        }
        let mut reported_columns: Vec<&str> = reported.split(", ").collect();
        let mut expected: Vec<String> = unique
            .columns
            .iter()
            .map(|c| format!("{}.{c}", unique.table))
            .collect();
        reported_columns.sort_unstable();
        expected.sort_unstable();
        reported_columns == expected
    }

    /// The name of a violated check constraint, if this is one.
    pub fn check_constraint(&self) -> Option<&str> {
        match self {
            DbFailure::CheckViolation { constraint } => constraint.as_deref(),
            _ => None,
        }
    }
}

fn classify_sqlx(error: &sqlx::Error) -> DbFailure {
    let database = match error {
        sqlx::Error::Database(database) => database,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => return DbFailure::Unavailable,
        _ => return DbFailure::Other,
    };
    let code = database.code().map(|c| c.into_owned()).unwrap_or_default();
    let constraint = database
        .constraint()
        .map(str::to_owned)
        .or_else(|| constraint_from_message(database.message()));
    match code.as_str() {
        // PostgreSQL SQLSTATEs (MySQL reports the same ones for these classes).
        "23505" => DbFailure::UniqueViolation { constraint },
        "23503" => DbFailure::ForeignKeyViolation { constraint },
        "23514" => DbFailure::CheckViolation { constraint },
        "23502" => DbFailure::NotNullViolation,
        "40001" => DbFailure::SerializationFailure,
        "40P01" => DbFailure::Deadlock,
        "57014" => DbFailure::QueryCanceled,
        // PostgreSQL: shutting down, or too many connections.
        "57P01" | "57P02" | "57P03" | "53300" => DbFailure::Unavailable,
        // SQLite extended result codes: SQLITE_BUSY, SQLITE_LOCKED and their variants.
        "5" | "6" | "261" | "262" | "517" => DbFailure::Busy,
        _ => match database.kind() {
            sqlx::error::ErrorKind::UniqueViolation => DbFailure::UniqueViolation { constraint },
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                DbFailure::ForeignKeyViolation { constraint }
            }
            sqlx::error::ErrorKind::CheckViolation => DbFailure::CheckViolation { constraint },
            sqlx::error::ErrorKind::NotNullViolation => DbFailure::NotNullViolation,
            _ => DbFailure::Other,
        },
    }
}

/// SQLite reports constraints only in its message, in fixed formats: `UNIQUE constraint failed:
/// users.email_canonical` and `CHECK constraint failed: ck_accounts_balance_not_negative`.
/// MySQL names the key as `… for key 'users.uq_users_email_canonical'`.
fn constraint_from_message(message: &str) -> Option<String> {
    if let Some((_, rest)) = message.split_once(" constraint failed: ") {
        return Some(rest.trim().to_owned());
    }
    let (_, key) = message.split_once("for key '")?;
    let key = key.strip_suffix('\'').unwrap_or(key);
    Some(key.rsplit('.').next().unwrap_or(key).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: UniqueConstraint = UniqueConstraint {
        name: "uq_users_email_canonical",
        table: "users",
        columns: &["email_canonical"],
    };

    #[test]
    fn a_unique_violation_matches_its_constraint_by_name() {
        let failure = DbFailure::UniqueViolation {
            constraint: Some("uq_users_email_canonical".into()),
        };
        assert!(failure.violates(&EMAIL));
    }

    #[test]
    fn a_sqlite_unique_violation_matches_its_constraint_by_columns() {
        let failure = DbFailure::UniqueViolation {
            constraint: Some("users.email_canonical".into()),
        };
        assert!(failure.violates(&EMAIL));
        let other = DbFailure::UniqueViolation {
            constraint: Some("users.username_canonical".into()),
        };
        assert!(!other.violates(&EMAIL));
    }

    #[test]
    fn constraint_names_are_read_from_sqlite_and_mysql_messages() {
        assert_eq!(
            constraint_from_message("CHECK constraint failed: ck_accounts_balance_not_negative")
                .as_deref(),
            Some("ck_accounts_balance_not_negative")
        );
        assert_eq!(
            constraint_from_message("Duplicate entry 'a' for key 'users.uq_users_email_canonical'")
                .as_deref(),
            Some("uq_users_email_canonical")
        );
    }
}
