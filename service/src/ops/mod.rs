//! Business operations: each returns domain types and [`crate::ServiceError`], and each owns
//! its transaction. An operation takes the pool (`&DatabaseConnection`) and decides itself how
//! to reach the database; no caller opens a transaction for it:
//!
//! * a **write** opens [`crate::db::begin_write`] inside [`crate::retry::with_retry`], sends
//!   every statement (its reads included) in it and commits once, through
//!   [`crate::db::commit`], which tells a connection lost during COMMIT (outcome unknown, never
//!   retried blindly) from one lost before it (retried): all or nothing. A refusal ends the
//!   transaction with an explicit ROLLBACK ([`crate::db::finish`] commits or rolls back as the
//!   work turned out), so that its connection is kept. An order, deposit or transfer with an
//!   idempotency key runs in [`crate::retry::with_retry_idempotent`] instead, since running it
//!   again finds its own committed row;
//! * a **read of several statements** opens one [`crate::db::begin_read`] transaction
//!   (read-only, REPEATABLE READ), so that its statements see one snapshot;
//! * a **read of one statement** runs on [`crate::db::reader`], with no transaction: a single
//!   statement is its own snapshot, and `BEGIN`/`COMMIT` around it would cost two round trips
//!   for nothing.
//!
//! Reads run inside [`crate::retry::with_retry_idempotent`]: a read whose connection is lost,
//! even during its COMMIT, simply runs again.
//!
//! So a read-only operation reaches the database through `begin_read` or `reader` and nothing
//! else: `grep` for them lists every read, and where reads run is decided in [`crate::db`].
//! Queries themselves live in [`crate::repo`], never here.
//!
//! Every public operation is a tracing span named after it, carrying the ids it works on
//! (never a token, a hash or a message body), at INFO like the request span around it. A span
//! prints no line of its own; it gives its fields to every event inside it, such as a retry's
//! WARN. At DEBUG it would be worse than quiet: under the default `info` filter a DEBUG span is
//! disabled altogether, and the WARN inside it would lose the ids.

pub mod conversations;
pub mod messages;
pub mod money;
pub mod orders;
pub mod products;
pub mod users;

/// Statements these operations repeat on purpose, each as a piece of its fingerprint (in the
/// normalised form an SQL observer such as `sql-observe` uses: `?` placeholders, quoted names)
/// and why. The application safelists them, so that its N+1 detector reports only the repeats
/// nobody intended; this crate states them without depending on any observer.
pub const INTENDED_REPEATS: &[(&str, &str)] = &[(
    // The guard's fingerprint (`quantity >= ?`) is specific enough on its own: nothing else
    // takes stock. No function is named: a build without debug information may inline
    // `repo::products::take_stock` away.
    STOCK_GUARD,
    "place_order takes each line's stock with its own guarded UPDATE, checked by rows \
     affected: one statement per line is the oversell guard, in product-id lock order",
)];

/// The fingerprint of `repo::products::take_stock`'s guarded `UPDATE`.
const STOCK_GUARD: &str = "UPDATE \"inventory\" SET \"quantity\" = \"quantity\" - ? WHERE \
     \"inventory\".\"product_id\" = ? AND \"inventory\".\"quantity\" >= ?";

/// The current time at the precision the databases keep (PostgreSQL: microseconds), so that a
/// timestamp an operation returns equals the one it stored and later reads back.
pub(crate) fn now() -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6).fixed_offset()
}
