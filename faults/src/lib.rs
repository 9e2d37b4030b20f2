//! Mercado's fault-injection suite: it checks that what a client was told is what the database
//! holds when the database misbehaves under load. Each test makes its own throwaway PostgreSQL
//! server (`initdb` in a temporary directory, `pg_ctl` on a free loopback port, stopped and
//! removed when the test ends, also when it panics), starts the real `mercado` binary over it,
//! arranges data through the HTTP API, runs a bounded concurrent load
//! of reads, orders, deposits and transfers, injects one fault — the app's backends killed, the
//! server stopped or crashed and started again, a lock that holds statements past
//! `statement_timeout`, a pool far smaller than the clients, Mercado itself SIGKILLed — and then
//! resends every failed write with its `Idempotency-Key` (orders, deposits and transfers all carry
//! one) and checks the invariants directly in the database with its own SQL: every acknowledged
//! write is stored, every failed one left nothing (or, resent with its key, exactly one row),
//! nothing is stored that no request asked for, stock and money add up, no request outlived its
//! deadline, and Mercado recovered without a restart.
//!
//! It depends on no crate of ours: Mercado is a black box driven over HTTP, and the schema is
//! read with plain SQL, so the suite tests the binary as it ships and keeps working while the
//! code behind it is rearranged.
//!
//! The fault tests themselves are in the root package (`tests/faults.rs`), so that they run
//! the binary cargo builds for them (`CARGO_BIN_EXE_mercado`); `MERCADO_BIN` names another one
//! (a release build, for the figures). Each test writes a JSON record of its figures to
//! `FAULTS_REPORT_DIR` when that is set; `cargo run -p mercado-faults --bin report -- <dir>`
//! renders them as the Markdown tables of `docs/reliability.md`. Failed requests are recorded,
//! not asserted: `FAULTS_STRICT=1` turns the issue's targets (see [`scenario::targets`]) into
//! assertions.
//!
//! ```sh
//! cargo build --release -p mercado
//! MERCADO_BIN=$PWD/target/release/mercado FAULTS_REPORT_DIR=/tmp/faults \
//!     cargo test -p mercado --test faults
//! cargo run -p mercado-faults --bin report -- /tmp/faults
//! ```
//!
//! The tests take a lock so that two never overlap: they load two cores on purpose, and their
//! figures mean nothing side by side. Each takes 15–25 s, the seven about two minutes. The suite
//! needs PostgreSQL's server programs (`initdb`, `pg_ctl`; `PG_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/*/bin`); run as root, it runs them as the `postgres` OS user
//! (`FAULTS_PG_OS_USER`). It never connects to a server it did not make. `FAULTS_KEEP=1` keeps
//! each test's directory (the server's data and log, `mercado.log`) instead of removing it;
//! `FAULTS_SEED` changes the load's random choices (default 1).

pub mod app;
pub mod invariants;
pub mod load;
pub mod pg;
pub mod report;
pub mod scenario;

use anyhow::Context;

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}
