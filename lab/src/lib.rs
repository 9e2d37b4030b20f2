//! Mercado's laboratory: what exists to teach, demonstrate, generate data or measure, kept out
//! of the data-access layer.
//!
//! - [`loading`]: the same related data loaded lazily, joined and select-in, with the SQL each
//!   sends (`mercado demo`);
//! - [`compare`]: canonical queries through the ORM and as hand-written SQL, side by side
//!   (`mercado compare`);
//! - [`seed`] and [`demo_data`]: generated data sets (`mercado seed`, the benchmarks) and the
//!   small demo data set `serve` loads into an empty database.
//!
//! It may depend on `service` (whose public operations and repositories it calls), `entity`,
//! `sql-observe` and SeaORM; the experiments' own queries live here, apart from the
//! application's. Nothing depends on it but the binary, the benchmarks and tests.

pub mod compare;
pub mod demo_data;
pub mod loading;
pub mod seed;
