//! Repositories, one per aggregate. Every function takes any `ConnectionTrait` — the pool or
//! a transaction — so that an operation can run several of them inside one transaction. Every
//! value reaches SQL as a bound parameter.

pub mod accounts;
pub mod conversations;
pub mod deposits;
pub mod messages;
pub mod orders;
pub mod products;
pub mod transfers;
pub mod users;
