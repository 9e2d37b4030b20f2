//! Business operations. Each is one transaction, all or nothing; each returns domain types and
//! [`crate::ServiceError`].

pub mod conversations;
pub mod messages;
pub mod money;
pub mod orders;
pub mod products;
pub mod users;
