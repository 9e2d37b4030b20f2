//! Business operations. Each is one transaction, all or nothing; each returns domain types and
//! [`crate::ServiceError`].

pub mod conversations;
pub mod messages;
pub mod money;
pub mod orders;
pub mod products;
pub mod users;

/// The current time at the precision the databases keep (PostgreSQL: microseconds), so that a
/// timestamp an operation returns equals the one it stored and later reads back.
pub(crate) fn now() -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6).fixed_offset()
}
