//! Business operations. Each is one transaction, all or nothing; each returns domain types and
//! [`crate::ServiceError`].

pub mod conversations;
pub mod messages;
pub mod money;
pub mod orders;
pub mod products;
pub mod users;

use crate::observe::{ObserveConfig, SafelistEntry};

/// The capture configuration these operations are meant to run under: the defaults, with each
/// statement an operation repeats on purpose safelisted, and why. The binary and the end-to-end
/// tests install it on the application's connection, so the N+1 detector (and the API's
/// `x-n-plus-one` header) reports only the repeats nobody intended.
pub fn observe_config() -> ObserveConfig {
    // No `in_function`: a safelist entry's function is matched against the innermost call site,
    // which here is `repo::products::take_stock`, not `place_order` — and a build without debug
    // information may inline that frame away. The guard's fingerprint (`quantity >= ?`) is
    // specific enough: nothing else takes stock.
    ObserveConfig::default().safelist(SafelistEntry::new(
        STOCK_GUARD,
        "place_order takes each line's stock with its own guarded UPDATE, checked by rows \
         affected: one statement per line is the oversell guard, in product-id lock order",
    ))
}

/// The fingerprint of `repo::products::take_stock`'s guarded `UPDATE`.
const STOCK_GUARD: &str = "UPDATE \"inventory\" SET \"quantity\" = \"quantity\" - ? WHERE \
     \"inventory\".\"product_id\" = ? AND \"inventory\".\"quantity\" >= ?";

/// The current time at the precision the databases keep (PostgreSQL: microseconds), so that a
/// timestamp an operation returns equals the one it stored and later reads back.
pub(crate) fn now() -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6).fixed_offset()
}
