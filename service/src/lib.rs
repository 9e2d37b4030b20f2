//! Mercado's data-access layer: every SQL statement the application runs is issued from here.
//!
//! Repositories (one per aggregate) take any `ConnectionTrait` — a pool or a transaction — so a
//! business operation opens one transaction, passes it to each repository call and commits once.
//! Operations return [`ServiceError`], in domain words. This crate knows nothing of HTTP; it may
//! depend on the generated `entity` crate and on SeaORM, never on `api` or the binary.

pub mod bulk;
pub mod db;
pub mod domain;
pub mod error;
pub mod export;
pub mod health;
pub mod ops;
pub mod pools;
pub mod repo;
pub mod retry;

pub use error::ServiceError;
