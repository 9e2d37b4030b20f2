//! Mercado's application library: what the `mercado` binary and the end-to-end tests share, so
//! that both start the application the same way.
//!
//! - [`settings`]: every setting, typed, with its default written once, and its command-line and
//!   environment form;
//! - [`startup`]: [`startup::Application`] — connecting, the SQL capture, the schema check, the
//!   demo data, the state and the listener — built once and run until stopped;
//! - [`schema`]: the one decision on pending migrations, for every command that needs the schema;
//! - [`telemetry`]: the process's tracing subscriber.
//!
//! It may depend on every crate of the workspace except `bench` and `testkit`; nothing but the
//! binary, the end-to-end tests and the benchmarks depends on it.

pub mod schema;
pub mod settings;
pub mod startup;
pub mod telemetry;
