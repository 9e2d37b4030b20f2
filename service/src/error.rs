//! The service's one error type, in domain words, and the classification of database failures
//! that produces it.
//!
//! Database failures are recognised by what the driver reports structurally — the SQLSTATE (or
//! SQLite's extended result code, or MySQL's error number) and the name of the violated
//! constraint — never by message text, except where a backend reports nothing better: SQLite
//! names the *columns* of a violated unique constraint, and MySQL and MariaDB name the key or
//! constraint only inside their message ([`classify_mysql`]). MySQL's SQLSTATE says too little
//! (23000 is a duplicate key, a missing parent row and MariaDB's failed check alike; a lock wait
//! timeout is the catch-all HY000), so there the error number decides.

use std::error::Error as StdError;

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Everything a business operation can fail with. Each variant up to `IdempotencyKeyReused` is
/// something the caller can act on; the rest are the system's fault: the database was
/// contended, unreachable, lost the connection or ran past a timeout (all answered "try again"),
/// or something nobody but an operator can act on (`Unexpected`).
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
    /// No connection could be had: the pool had none free within its acquire timeout (the
    /// database is down, or every connection is busy), or the pool is closed.
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// The connection broke (the server shut down, crashed or killed the backend; the network
    /// failed) before COMMIT was sent: nothing was applied, and the whole operation may run
    /// again on a fresh connection ([`crate::retry`] does, within a time bound).
    #[error("the connection to the database was lost")]
    ConnectionLost(#[source] DbErr),
    /// The connection broke while COMMIT was on its way: the transaction may or may not have
    /// committed, and nobody can tell from here. A write is never run again blindly on this; a
    /// read, or an order with an idempotency key, may be ([`crate::retry::with_retry_idempotent`]).
    #[error("the connection to the database was lost during COMMIT; the outcome is unknown")]
    CommitOutcomeUnknown(#[source] DbErr),
    /// A statement ran past a timeout of the database's and was cancelled; nothing was applied.
    #[error("{limit} elapsed; the statement was cancelled")]
    TimedOut {
        limit: DbTimeout,
        #[source]
        source: DbErr,
    },
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

    /// Whether running the whole transaction again soon may succeed, a bounded number of times:
    /// the database aborted it to stay consistent, or SQLite's file stayed locked.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::Contended(_)
                | ServiceError::TimedOut {
                    limit: DbTimeout::SqliteBusy,
                    ..
                }
        )
    }

    /// Whether the connection was lost before COMMIT, so that the operation is certain to have
    /// changed nothing and may run again on a fresh connection.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ServiceError::ConnectionLost(_))
    }

    /// Whether this says something about the database's reachability (a lost connection, no
    /// connection to be had): what [`crate::health`] listens for.
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self,
            ServiceError::Unavailable(_)
                | ServiceError::ConnectionLost(_)
                | ServiceError::CommitOutcomeUnknown(_)
        )
    }
}

/// Which of the database's timeouts cancelled a statement: named in the error and its log line,
/// with the setting that controls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTimeout {
    /// PostgreSQL's `statement_timeout` (SQLSTATE 57014), set by `DATABASE_STATEMENT_TIMEOUT`.
    Statement,
    /// SQLite's busy timeout (`SQLITE_BUSY` once it has waited it out): another connection held
    /// the write lock for that long.
    SqliteBusy,
    /// MySQL's and MariaDB's `innodb_lock_wait_timeout` (error 1205): a row lock stayed held by
    /// another transaction for that long. Where PostgreSQL waits for a lock until
    /// `statement_timeout`, InnoDB gives up on the lock itself.
    LockWait,
}

impl std::fmt::Display for DbTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbTimeout::Statement => "PostgreSQL's statement_timeout (DATABASE_STATEMENT_TIMEOUT)",
            DbTimeout::SqliteBusy => "SQLite's busy timeout (another connection held the lock)",
            DbTimeout::LockWait => {
                "InnoDB's innodb_lock_wait_timeout (another transaction held the row lock)"
            }
        })
    }
}

impl From<DbErr> for ServiceError {
    /// The default mapping for a database error that no caller claimed as a domain error.
    fn from(error: DbErr) -> Self {
        match DbFailure::of(&error) {
            DbFailure::SerializationFailure | DbFailure::Deadlock | DbFailure::Busy => {
                ServiceError::Contended(error)
            }
            DbFailure::BusyTimeout => ServiceError::TimedOut {
                limit: DbTimeout::SqliteBusy,
                source: error,
            },
            DbFailure::QueryCanceled => ServiceError::TimedOut {
                limit: DbTimeout::Statement,
                source: error,
            },
            DbFailure::LockWaitTimeout => ServiceError::TimedOut {
                limit: DbTimeout::LockWait,
                source: error,
            },
            DbFailure::ConnectionLost => ServiceError::ConnectionLost(error),
            DbFailure::Unavailable => ServiceError::Unavailable(error),
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
    /// SQLite's `SQLITE_LOCKED` and the `SQLITE_BUSY` variants that do not wait (recovery, a
    /// stale snapshot): another connection is in the way; run it again.
    Busy,
    /// SQLite's plain `SQLITE_BUSY` (5): the busy handler waited out the busy timeout.
    BusyTimeout,
    /// 57014: cancelled, in Mercado by `statement_timeout` (nothing else cancels statements);
    /// MariaDB's `max_statement_time` (1969) and MySQL's `max_execution_time` (3024) likewise.
    QueryCanceled,
    /// MySQL 1205: InnoDB waited `innodb_lock_wait_timeout` for a row lock and gave up.
    LockWaitTimeout,
    /// An established connection broke: an I/O error, the driver's worker gone, the server
    /// shutting down or crashing (57P01, 57P02, 57P03), or SQLSTATE class 08.
    ConnectionLost,
    /// No connection to be had: the pool timed out or is closed, TLS failed, or the server
    /// refuses more connections (53300).
    Unavailable,
    Other,
}

impl DbFailure {
    pub fn of(error: &DbErr) -> DbFailure {
        match error {
            DbErr::ConnectionAcquire(_) => DbFailure::Unavailable,
            // Opening a connection failed: a broken one is lost, anything else unavailable.
            DbErr::Conn(RuntimeErr::SqlxError(e)) => match classify_sqlx(e) {
                DbFailure::ConnectionLost => DbFailure::ConnectionLost,
                _ => DbFailure::Unavailable,
            },
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
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            return DbFailure::Unavailable;
        }
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => return DbFailure::ConnectionLost,
        _ => return DbFailure::Other,
    };
    if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        && let Some(failure) = classify_mysql(mysql.number(), mysql.message())
    {
        return failure;
    }
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
        // PostgreSQL: the backend was terminated (admin shutdown, pg_terminate_backend), the
        // server crashed, or it cannot take connections now (starting or shutting down).
        "57P01" | "57P02" | "57P03" => DbFailure::ConnectionLost,
        // Class 08: connection exception.
        code if code.starts_with("08") => DbFailure::ConnectionLost,
        "53300" => DbFailure::Unavailable,
        // SQLite extended result codes: SQLITE_BUSY after its busy timeout; SQLITE_LOCKED and
        // the busy variants that do not wait.
        "5" => DbFailure::BusyTimeout,
        "6" | "261" | "262" | "517" => DbFailure::Busy,
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

/// A MySQL or MariaDB error by its number, or `None` for the numbers that mean nothing here
/// (then the SQLSTATE decides, as for the connection class 08). The constraint is read from the
/// message, the only place these servers name it.
fn classify_mysql(number: u16, message: &str) -> Option<DbFailure> {
    let constraint = || mysql_constraint(message);
    Some(match number {
        // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME.
        1062 | 1586 => DbFailure::UniqueViolation {
            constraint: constraint(),
        },
        // ER_NO_REFERENCED_ROW(_2): the parent row is missing; ER_ROW_IS_REFERENCED(_2): a
        // child row still points at the row being deleted.
        1216 | 1217 | 1451 | 1452 => DbFailure::ForeignKeyViolation {
            constraint: constraint(),
        },
        // MySQL's ER_CHECK_CONSTRAINT_VIOLATED, MariaDB's ER_CONSTRAINT_FAILED.
        3819 | 4025 => DbFailure::CheckViolation {
            constraint: constraint(),
        },
        // ER_BAD_NULL_ERROR, ER_NO_DEFAULT_FOR_FIELD.
        1048 | 1364 => DbFailure::NotNullViolation,
        // ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back.
        1213 => DbFailure::Deadlock,
        // ER_LOCK_WAIT_TIMEOUT.
        1205 => DbFailure::LockWaitTimeout,
        // MariaDB's ER_STATEMENT_TIMEOUT, MySQL's ER_QUERY_TIMEOUT, ER_QUERY_INTERRUPTED.
        1969 | 3024 | 1317 => DbFailure::QueryCanceled,
        // ER_SERVER_SHUTDOWN, MariaDB's ER_CONNECTION_KILLED, MySQL's idle-client disconnect,
        // and the client's own "server has gone away" and "lost connection".
        1053 | 1927 | 4031 | 2006 | 2013 => DbFailure::ConnectionLost,
        // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS: no connection to be had.
        1040 | 1203 => DbFailure::Unavailable,
        _ => return None,
    })
}

/// The constraint a MySQL or MariaDB message names, in the formats these servers use:
/// ``Duplicate entry 'a' for key 'uq_users_email_canonical'`` (MySQL 8 writes
/// `'users.uq_users_email_canonical'`), ``… a foreign key constraint fails (`db`.`t`, CONSTRAINT
/// `fk_t_user_id` FOREIGN KEY …)``, MariaDB's ``CONSTRAINT `ck_t_amount_positive` failed for
/// `db`.`t` `` and MySQL's `Check constraint 'ck_t_amount_positive' is violated.`
fn mysql_constraint(message: &str) -> Option<String> {
    let between = |open: &str, close: char| -> Option<String> {
        let (_, rest) = message.split_once(open)?;
        let (name, _) = rest.split_once(close)?;
        Some(name.to_owned())
    };
    if let Some(key) = between("for key '", '\'') {
        return Some(key.rsplit('.').next().unwrap_or(&key).to_owned());
    }
    between("CONSTRAINT `", '`').or_else(|| between("Check constraint '", '\''))
}

/// SQLite reports constraints only in its message, in fixed formats: `UNIQUE constraint failed:
/// users.email_canonical` and `CHECK constraint failed: ck_accounts_balance_not_negative`.
fn constraint_from_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once(" constraint failed: ")?;
    Some(rest.trim().to_owned())
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

    /// A database error as a driver reports it: a SQLSTATE (or SQLite result code) and a message.
    #[derive(Debug)]
    struct Reported(&'static str);

    impl std::fmt::Display for Reported {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl StdError for Reported {}

    impl sqlx::error::DatabaseError for Reported {
        fn message(&self) -> &str {
            "reported"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn query_error(error: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(error)))
    }

    fn with_code(code: &'static str) -> DbErr {
        query_error(sqlx::Error::Database(Box::new(Reported(code))))
    }

    #[test]
    fn a_broken_connection_is_lost_not_unavailable() {
        let broken = [
            query_error(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
            query_error(sqlx::Error::WorkerCrashed),
            // Terminated by an administrator, a crash of the server, a server that cannot take
            // connections now, and class 08.
            with_code("57P01"),
            with_code("57P02"),
            with_code("57P03"),
            with_code("08006"),
        ];
        for error in broken {
            assert_eq!(DbFailure::of(&error), DbFailure::ConnectionLost, "{error}");
            assert!(ServiceError::from(error).is_connection_lost());
        }
    }

    #[test]
    fn no_connection_to_be_had_is_unavailable_and_not_retried_as_a_lost_one() {
        for error in [
            DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::ConnectionClosed),
            with_code("53300"),
        ] {
            let shown = error.to_string();
            let error = ServiceError::from(error);
            assert!(matches!(error, ServiceError::Unavailable(_)), "{shown}");
            assert!(
                !error.is_connection_lost() && !error.is_retryable(),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_statement_timeout_and_a_sqlite_busy_timeout_are_timeouts_that_name_themselves() {
        let statement = ServiceError::from(with_code("57014"));
        assert!(matches!(
            statement,
            ServiceError::TimedOut {
                limit: DbTimeout::Statement,
                ..
            }
        ));
        assert!(
            statement.to_string().contains("statement_timeout"),
            "{statement}"
        );
        assert!(!statement.is_retryable());

        let busy = ServiceError::from(with_code("5"));
        assert!(busy.to_string().contains("busy timeout"), "{busy}");
        assert!(
            busy.is_retryable(),
            "SQLite's lock may be free the next time"
        );
        assert!(matches!(
            ServiceError::from(with_code("517")),
            ServiceError::Contended(_)
        ));
    }

    #[test]
    fn constraint_names_are_read_from_sqlite_messages() {
        assert_eq!(
            constraint_from_message("CHECK constraint failed: ck_accounts_balance_not_negative")
                .as_deref(),
            Some("ck_accounts_balance_not_negative")
        );
    }

    #[test]
    fn mysql_and_mariadb_errors_are_classified_by_number_with_the_constraint_they_name() {
        let unique = |name: &str| DbFailure::UniqueViolation {
            constraint: Some(name.into()),
        };
        let cases = [
            (
                1062,
                "Duplicate entry 'a@example.com' for key 'uq_users_email_canonical'",
                unique("uq_users_email_canonical"),
            ),
            // MySQL 8 prefixes the table.
            (
                1062,
                "Duplicate entry 'a' for key 'users.uq_users_email_canonical'",
                unique("uq_users_email_canonical"),
            ),
            (
                1452,
                "Cannot add or update a child row: a foreign key constraint fails \
                 (`mercado`.`conversations`, CONSTRAINT `fk_conversations_created_by` FOREIGN \
                 KEY (`created_by`) REFERENCES `users` (`id`))",
                DbFailure::ForeignKeyViolation {
                    constraint: Some("fk_conversations_created_by".into()),
                },
            ),
            (
                4025,
                "CONSTRAINT `ck_accounts_balance_not_negative` failed for `mercado`.`accounts`",
                DbFailure::CheckViolation {
                    constraint: Some("ck_accounts_balance_not_negative".into()),
                },
            ),
            (
                3819,
                "Check constraint 'ck_accounts_balance_not_negative' is violated.",
                DbFailure::CheckViolation {
                    constraint: Some("ck_accounts_balance_not_negative".into()),
                },
            ),
            (
                1213,
                "Deadlock found when trying to get lock; try restarting transaction",
                DbFailure::Deadlock,
            ),
            (
                1205,
                "Lock wait timeout exceeded; try restarting transaction",
                DbFailure::LockWaitTimeout,
            ),
            (1040, "Too many connections", DbFailure::Unavailable),
            (1927, "Connection was killed", DbFailure::ConnectionLost),
        ];
        for (number, message, expected) in cases {
            assert_eq!(classify_mysql(number, message), Some(expected), "{number}");
        }
        assert_eq!(
            classify_mysql(1146, "Table 'mercado.x' doesn't exist"),
            None
        );
    }
}
