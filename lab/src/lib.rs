//! Mercado's laboratory: what exists to teach, demonstrate, generate data or measure, kept out
//! of the data-access layer.
//!
//! - [`loading`]: the same related data loaded lazily, joined and select-in, with the SQL each
//!   sends (`mercado demo`);
//! - [`compare`]: canonical queries through the ORM — the application's own code wherever it
//!   has the query — and as hand-written SQL, side by side (`mercado compare`);
//! - [`seed`]: the one seeder. Every data set (the first-run demo data, the demo's related
//!   rows, the sized sets of `mercado seed` and the benchmarks) is described once as a
//!   [`seed::DataSet`] and written by one of two writers, in bulk or through `service::ops`;
//! - [`demo_data`]: what `serve` does with an empty database — loads the first-run set and
//!   prints a welcome with tokens.
//!
//! It may depend on `service` (whose public operations and repositories it calls), `entity`,
//! `sql-observe` and SeaORM. Its own queries (the loading strategies, the comparison's raw SQL
//! and spenders report, the bulk writer's inserts) live here, apart from the application's;
//! each module says which it uses. Nothing depends on it but the binary, the benchmarks and
//! tests.

pub mod compare;
pub mod demo_data;
pub mod loading;
pub mod seed;
