//! The invariants of a run, checked against the database itself with the suite's own SQL: what
//! the clients were told against what is stored.
//!
//! A request's answer says what is known of its effect (see [`Outcome`]): a 2xx must be in the
//! database; any other answer must have left nothing; no answer at all (a reset connection, a
//! killed process, a passed deadline) may have gone either way. Orders are found by id and by
//! their `Idempotency-Key`, transfers by id and by their amount (distinct per sender), and
//! deposits, which leave no row of their own, by their effect on the balance: each account's
//! balance, less what it was paid and plus what it paid, is the sum of its deposits, which must
//! be the acknowledged ones plus some of those that went unanswered (their amounts are distinct,
//! so which ones can be told).

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;

use crate::load::{Fixture, Kind, Outcome, RequestRecord, Resend, Write, money};

/// At most this many violations are quoted in a check's detail.
const QUOTED: usize = 5;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was checked (counts), or the first violations.
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, violations: &[String], checked: String) -> Check {
        let passed = violations.is_empty();
        let detail = if passed {
            checked
        } else {
            let mut quoted: Vec<String> = violations.iter().take(QUOTED).cloned().collect();
            if violations.len() > QUOTED {
                quoted.push(format!("… and {} more", violations.len() - QUOTED));
            }
            format!("{} violation(s): {}", violations.len(), quoted.join("; "))
        };
        Check {
            name: name.to_owned(),
            passed,
            detail,
        }
    }

    pub fn holds(name: &str, passed: bool, detail: String) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// The rows the invariants are about, read in one REPEATABLE READ snapshot.
#[derive(Debug, Default)]
struct Snapshot {
    /// id → (buyer, key, status, total in cents)
    orders: HashMap<i64, (i64, Option<String>, String, i64)>,
    /// order id → [(product, quantity)]
    items: HashMap<i64, Vec<(i64, i64)>>,
    /// (buyer, key) → order ids
    by_key: HashMap<(i64, String), Vec<i64>>,
    /// id → (from, to, cents)
    transfers: HashMap<i64, (i64, i64, i64)>,
    /// user → balance in cents
    balances: HashMap<i64, i64>,
    /// product → quantity in stock
    stock: HashMap<i64, i64>,
    /// product → quantity sold by the orders not cancelled
    sold: HashMap<i64, i64>,
    /// user → what the orders not cancelled paid them, as sellers, in cents
    earned: HashMap<i64, i64>,
    /// user → what their orders not cancelled cost them, in cents
    spent: HashMap<i64, i64>,
}

async fn snapshot(db: &mut PgConnection) -> anyhow::Result<Snapshot> {
    let mut tx = sqlx::Connection::begin(db)
        .await
        .context("beginning the snapshot")?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .context("making the snapshot consistent")?;
    let mut snap = Snapshot::default();

    let orders: Vec<(i64, i64, Option<String>, String, i64)> = sqlx::query_as(
        "SELECT id, buyer_id, idempotency_key, status, (total * 100)::bigint FROM orders",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading orders")?;
    for (id, buyer, key, status, total) in orders {
        if let Some(key) = &key {
            snap.by_key
                .entry((buyer, key.clone()))
                .or_default()
                .push(id);
        }
        if status != "cancelled" {
            *snap.spent.entry(buyer).or_default() += total;
        }
        snap.orders.insert(id, (buyer, key, status, total));
    }

    let items: Vec<(i64, i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT oi.order_id, oi.product_id, oi.quantity::bigint, \
                (oi.quantity * oi.unit_price * 100)::bigint, p.seller_id, o.status \
         FROM order_items oi \
         JOIN orders o ON o.id = oi.order_id \
         JOIN products p ON p.id = oi.product_id",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading order items")?;
    for (order, product, quantity, line_cents, seller, status) in items {
        snap.items
            .entry(order)
            .or_default()
            .push((product, quantity));
        if status != "cancelled" {
            *snap.sold.entry(product).or_default() += quantity;
            *snap.earned.entry(seller).or_default() += line_cents;
        }
    }

    let transfers: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, from_user_id, to_user_id, (amount * 100)::bigint FROM transfers",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading transfers")?;
    for (id, from, to, cents) in transfers {
        snap.transfers.insert(id, (from, to, cents));
    }

    let balances: Vec<(i64, i64)> =
        sqlx::query_as("SELECT user_id, (balance * 100)::bigint FROM accounts")
            .fetch_all(&mut *tx)
            .await
            .context("reading balances")?;
    snap.balances.extend(balances);

    let stock: Vec<(i64, i64)> =
        sqlx::query_as("SELECT product_id, quantity::bigint FROM inventory")
            .fetch_all(&mut *tx)
            .await
            .context("reading inventory")?;
    snap.stock.extend(stock);

    tx.commit().await.context("ending the snapshot")?;
    Ok(snap)
}

/// How many orders `buyer` has under `key`.
pub async fn orders_with_key(db: &mut PgConnection, buyer: i64, key: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE buyer_id = $1 AND idempotency_key = $2")
        .bind(buyer)
        .bind(key)
        .fetch_one(db)
        .await
        .context("counting the orders of a key")
}

/// Check every invariant of the database against what the clients were told.
pub async fn check(
    db: &mut PgConnection,
    fixture: &Fixture,
    records: &[RequestRecord],
    resends: &[Resend],
) -> anyhow::Result<Vec<Check>> {
    let snap = snapshot(db).await?;
    Ok(check_snapshot(fixture, records, resends, &snap))
}

fn check_snapshot(
    fixture: &Fixture,
    records: &[RequestRecord],
    resends: &[Resend],
    snap: &Snapshot,
) -> Vec<Check> {
    let deposits = DepositLedger::new(fixture, records, snap);
    vec![
        acknowledged_writes_are_stored(records, resends, snap, &deposits),
        failed_writes_left_nothing(records, resends, snap, &deposits),
        nothing_is_stored_that_no_request_asked_for(records, snap),
        resent_orders_made_exactly_one_order_each(resends, snap),
        stock_sold_equals_the_items_of_orders_not_cancelled(fixture, snap),
        the_sum_of_balances_equals_the_sum_of_deposits(fixture, records, snap),
    ]
}

fn acknowledged_writes_are_stored(
    records: &[RequestRecord],
    resends: &[Resend],
    snap: &Snapshot,
    deposits: &DepositLedger,
) -> Check {
    let mut violations = Vec::new();
    let (mut orders, mut on_resend, mut transfers, mut deposit_count) = (0, 0, 0, 0);
    for record in records.iter().filter(|r| r.acked()) {
        match &record.write {
            Some(Write::Order {
                buyer,
                items,
                id,
                total_cents,
            }) => {
                orders += 1;
                let key = record.key.as_deref().unwrap_or("");
                let Some(id) = id else {
                    violations.push(format!("order {key} acknowledged without an id"));
                    continue;
                };
                match snap.orders.get(id) {
                    None => {
                        violations.push(format!("acknowledged order {id} ({key}) is not stored"))
                    }
                    Some((stored_buyer, stored_key, status, total)) => {
                        if stored_buyer != buyer || stored_key.as_deref() != Some(key) {
                            violations.push(format!(
                                "order {id} is stored for buyer {stored_buyer} key {stored_key:?}, \
                                 acknowledged for buyer {buyer} key {key}"
                            ));
                        }
                        if status != "paid" {
                            violations.push(format!("order {id} is {status}, not paid"));
                        }
                        if Some(*total) != *total_cents {
                            violations.push(format!(
                                "order {id} stored total {} but answered {:?}",
                                money(*total),
                                total_cents.map(money)
                            ));
                        }
                        let mut stored = snap.items.get(id).cloned().unwrap_or_default();
                        let mut asked = items.clone();
                        stored.sort();
                        asked.sort();
                        if stored != asked {
                            violations.push(format!(
                                "order {id} stores items {stored:?}, was asked for {asked:?}"
                            ));
                        }
                    }
                }
            }
            Some(Write::Transfer {
                from,
                to,
                cents,
                id,
            }) => {
                transfers += 1;
                let Some(id) = id else {
                    violations.push("a transfer acknowledged without an id".to_owned());
                    continue;
                };
                match snap.transfers.get(id) {
                    None => violations.push(format!("acknowledged transfer {id} is not stored")),
                    Some(stored) if stored != &(*from, *to, *cents) => violations.push(format!(
                        "transfer {id} stored as {stored:?}, acknowledged as {:?}",
                        (from, to, cents)
                    )),
                    Some(_) => {}
                }
            }
            Some(Write::Deposit { .. }) => deposit_count += 1,
            None => {}
        }
    }
    for resend in resends {
        if let Some(id) = resend.id {
            on_resend += 1;
            match snap.orders.get(&id) {
                Some((buyer, Some(key), _, _)) if *buyer == resend.buyer && *key == resend.key => {}
                other => violations.push(format!(
                    "order {id} acknowledged on resend of {} is stored as {other:?}",
                    resend.key
                )),
            }
        }
    }
    violations.extend(deposits.missing());
    Check::new(
        "every acknowledged write is in the database",
        &violations,
        format!(
            "{orders} orders (and {on_resend} acknowledged on resend) by id, key, total and \
             items; {transfers} transfers by id; \
             {deposit_count} deposits by their effect on each balance"
        ),
    )
}

fn failed_writes_left_nothing(
    records: &[RequestRecord],
    resends: &[Resend],
    snap: &Snapshot,
    deposits: &DepositLedger,
) -> Check {
    let mut violations = Vec::new();
    let resent: HashMap<&str, &Resend> = resends.iter().map(|r| (r.key.as_str(), r)).collect();
    let (mut refused, mut lost, mut lost_applied) = (0usize, 0usize, 0usize);
    // Transfers are told apart by (sender, amount).
    let mut transfer_requests: HashMap<(i64, i64), &RequestRecord> = HashMap::new();
    for record in records {
        if let Some(Write::Transfer { from, cents, .. }) = &record.write {
            transfer_requests.insert((*from, *cents), record);
        }
    }
    for record in records.iter().filter(|r| r.is_write() && !r.acked()) {
        match record.outcome() {
            Outcome::Refused => refused += 1,
            Outcome::Lost => lost += 1,
            Outcome::Acked => {}
        }
        if let (Some(key), Some(Write::Order { buyer, .. })) = (&record.key, &record.write) {
            if resent.get(key.as_str()).is_some_and(|r| r.id.is_some()) {
                continue; // judged by resent_orders_made_exactly_one_order_each
            }
            let stored = snap.by_key.get(&(*buyer, key.clone())).map_or(0, Vec::len);
            match (record.outcome(), stored) {
                (_, 0) => {}
                (Outcome::Lost, 1) => lost_applied += 1,
                (outcome, n) => violations.push(format!(
                    "order {key}, {outcome:?} (status {:?} {:?}), left {n} order(s)",
                    record.status, record.code
                )),
            }
        }
    }
    for (id, (from, _, cents)) in &snap.transfers {
        if let Some(record) = transfer_requests.get(&(*from, *cents)) {
            match record.outcome() {
                Outcome::Acked => {}
                Outcome::Lost => lost_applied += 1,
                Outcome::Refused => violations.push(format!(
                    "transfer {id} of {} from {from} is stored, its request was answered {:?} {:?}",
                    money(*cents),
                    record.status,
                    record.code
                )),
            }
        }
    }
    let (deposit_violations, deposits_applied) = deposits.unexplained();
    violations.extend(deposit_violations);
    lost_applied += deposits_applied;
    Check::new(
        "every failed write left nothing (a resent order: exactly one)",
        &violations,
        format!(
            "{refused} answered with an error (or never sent) left nothing; {lost} unanswered, of which \
             {lost_applied} took effect"
        ),
    )
}

fn nothing_is_stored_that_no_request_asked_for(
    records: &[RequestRecord],
    snap: &Snapshot,
) -> Check {
    let mut violations = Vec::new();
    let keys: HashSet<(i64, &str)> = records
        .iter()
        .filter_map(|r| match (&r.write, &r.key) {
            (Some(Write::Order { buyer, .. }), Some(key)) => Some((*buyer, key.as_str())),
            _ => None,
        })
        .collect();
    let transfers: HashSet<(i64, i64, i64)> = records
        .iter()
        .filter_map(|r| match &r.write {
            Some(Write::Transfer {
                from, to, cents, ..
            }) => Some((*from, *to, *cents)),
            _ => None,
        })
        .collect();
    for (id, (buyer, key, _, _)) in &snap.orders {
        match key {
            Some(key) if keys.contains(&(*buyer, key.as_str())) => {}
            _ => violations.push(format!(
                "order {id} (buyer {buyer}, key {key:?}) was never asked for"
            )),
        }
    }
    for ((buyer, key), ids) in &snap.by_key {
        if ids.len() > 1 {
            violations.push(format!(
                "key {key} of buyer {buyer} has {} orders: {ids:?}",
                ids.len()
            ));
        }
    }
    for (id, transfer) in &snap.transfers {
        if !transfers.contains(transfer) {
            violations.push(format!("transfer {id} {transfer:?} was never asked for"));
        }
    }
    Check::new(
        "nothing is stored that no request asked for",
        &violations,
        format!(
            "{} orders and {} transfers stored, each asked for once",
            snap.orders.len(),
            snap.transfers.len()
        ),
    )
}

fn resent_orders_made_exactly_one_order_each(resends: &[Resend], snap: &Snapshot) -> Check {
    let mut violations = Vec::new();
    for resend in resends {
        let stored = snap
            .by_key
            .get(&(resend.buyer, resend.key.clone()))
            .cloned()
            .unwrap_or_default();
        match resend.id {
            None => violations.push(format!(
                "order {} still fails after {} resend(s): {:?} {:?}",
                resend.key, resend.attempts, resend.last_status, resend.last_code
            )),
            Some(id) if stored != [id] => violations.push(format!(
                "order {} resent as order {id}, but its key holds {stored:?}",
                resend.key
            )),
            Some(_) => {}
        }
    }
    let acked = resends.iter().filter(|r| r.id.is_some()).count();
    Check::new(
        "every failed keyed order, resent with its key, made exactly one order",
        &violations,
        format!(
            "{} resent, {acked} acknowledged, each key holding one order",
            resends.len()
        ),
    )
}

fn stock_sold_equals_the_items_of_orders_not_cancelled(
    fixture: &Fixture,
    snap: &Snapshot,
) -> Check {
    let mut violations = Vec::new();
    let mut sold_total = 0;
    for product in &fixture.products {
        let Some(stock) = snap.stock.get(&product.id) else {
            violations.push(format!("product {} has no inventory row", product.id));
            continue;
        };
        let sold = product.initial_stock - stock;
        let items = snap.sold.get(&product.id).copied().unwrap_or(0);
        sold_total += sold;
        if sold != items {
            violations.push(format!(
                "product {}: {sold} sold (stock {} → {stock}) but order items hold {items}",
                product.id, product.initial_stock
            ));
        }
    }
    Check::new(
        "stock sold equals the items of the orders not cancelled",
        &violations,
        format!(
            "{sold_total} units sold over {} products",
            fixture.products.len()
        ),
    )
}

fn the_sum_of_balances_equals_the_sum_of_deposits(
    fixture: &Fixture,
    records: &[RequestRecord],
    snap: &Snapshot,
) -> Check {
    let balances: i64 = snap.balances.values().sum();
    let mut acked: i64 = fixture.setup_deposits.iter().map(|(_, c)| c).sum();
    let mut lost = Vec::new();
    for record in records {
        if let Some(Write::Deposit { cents, .. }) = &record.write {
            match record.outcome() {
                Outcome::Acked => acked += cents,
                Outcome::Lost => lost.push(*cents),
                Outcome::Refused => {}
            }
        }
    }
    let extra = balances - acked;
    let passed = subset_sum(&lost, extra);
    let detail = if passed {
        format!(
            "balances {} = acknowledged deposits {} + {} of {} unanswered",
            money(balances),
            money(acked),
            money(extra),
            lost.len()
        )
    } else {
        format!(
            "balances {} − acknowledged deposits {} = {}, which no choice of the {} unanswered \
             deposits makes",
            money(balances),
            money(acked),
            money(extra),
            lost.len()
        )
    };
    Check::holds(
        "the sum of balances equals the sum of deposits",
        passed,
        detail,
    )
}

/// Each user's deposits as the database implies them (balance, plus what they paid in orders
/// and transfers, less what they were paid) against the deposits the clients made.
#[derive(Debug)]
struct DepositLedger {
    /// user → (implied by the database, acknowledged, unanswered amounts, refused amounts)
    users: HashMap<i64, (i64, i64, Vec<i64>, Vec<i64>)>,
}

impl DepositLedger {
    fn new(fixture: &Fixture, records: &[RequestRecord], snap: &Snapshot) -> DepositLedger {
        let mut users: HashMap<i64, (i64, i64, Vec<i64>, Vec<i64>)> = HashMap::new();
        for (user, balance) in &snap.balances {
            let sent: i64 = snap
                .transfers
                .values()
                .filter(|t| t.0 == *user)
                .map(|t| t.2)
                .sum();
            let received: i64 = snap
                .transfers
                .values()
                .filter(|t| t.1 == *user)
                .map(|t| t.2)
                .sum();
            let spent = snap.spent.get(user).copied().unwrap_or(0);
            let earned = snap.earned.get(user).copied().unwrap_or(0);
            users.entry(*user).or_default().0 = balance + sent - received + spent - earned;
        }
        for (user, cents) in &fixture.setup_deposits {
            users.entry(*user).or_default().1 += cents;
        }
        for record in records.iter().filter(|r| r.kind == Kind::Deposit) {
            if let Some(Write::Deposit { user, cents }) = &record.write {
                let entry = users.entry(*user).or_default();
                match record.outcome() {
                    Outcome::Acked => entry.1 += cents,
                    Outcome::Lost => entry.2.push(*cents),
                    Outcome::Refused => entry.3.push(*cents),
                }
            }
        }
        DepositLedger { users }
    }

    /// Users whose balance lacks an acknowledged deposit.
    fn missing(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .iter()
            .filter(|(_, (implied, acked, _, _))| implied < acked)
            .map(|(user, (implied, acked, _, _))| {
                format!(
                    "user {user}: the ledger implies deposits of {}, {} were acknowledged",
                    money(*implied),
                    money(*acked)
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Users whose balance holds more than acknowledged and unanswered deposits can explain,
    /// and how many unanswered deposits took effect.
    fn unexplained(&self) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut applied = 0;
        for (user, (implied, acked, lost, refused)) in &self.users {
            let extra = implied - acked;
            if extra < 0 {
                continue; // reported by missing()
            }
            match subset_of(lost, extra) {
                Some(count) => applied += count,
                None => {
                    let with_refused = [lost.as_slice(), refused.as_slice()].concat();
                    let why = if subset_sum(&with_refused, extra) {
                        "a deposit answered with an error took effect"
                    } else {
                        "no choice of its deposits explains it"
                    };
                    out.push(format!(
                        "user {user}: {} more than acknowledged deposits; {why}",
                        money(extra)
                    ));
                }
            }
        }
        out.sort();
        (out, applied)
    }
}

/// Whether some of `amounts` add up to exactly `target`.
fn subset_sum(amounts: &[i64], target: i64) -> bool {
    subset_of(amounts, target).is_some()
}

/// How many of `amounts` (positive) add up to exactly `target`, if some do (the fewest).
fn subset_of(amounts: &[i64], target: i64) -> Option<usize> {
    if target < 0 {
        return None;
    }
    if target == 0 {
        return Some(0);
    }
    let Ok(size) = usize::try_from(target) else {
        return None;
    };
    // fewest[s]: the fewest amounts that make s.
    let mut fewest: Vec<Option<usize>> = vec![None; size + 1];
    fewest[0] = Some(0);
    for amount in amounts {
        let Ok(amount) = usize::try_from(*amount) else {
            continue;
        };
        if amount == 0 || amount > size {
            continue;
        }
        for sum in (amount..=size).rev() {
            if let Some(count) = fewest[sum - amount] {
                let candidate = count + 1;
                if fewest[sum].is_none_or(|c| candidate < c) {
                    fewest[sum] = Some(candidate);
                }
            }
        }
    }
    fewest[size]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::{Product, User};

    const BUYER: i64 = 1;
    const OTHER: i64 = 2;
    const SELLER: i64 = 3;
    const PRODUCT: i64 = 10;

    fn user(id: i64) -> User {
        User {
            id,
            token: String::new(),
        }
    }

    fn fixture() -> Fixture {
        Fixture {
            base_url: String::new(),
            seller: user(SELLER),
            clients: vec![user(BUYER), user(OTHER)],
            products: vec![Product {
                id: PRODUCT,
                price_cents: 100,
                initial_stock: 50,
            }],
            conversation_id: 1,
            setup_deposits: vec![(BUYER, 10_000), (OTHER, 10_000)],
        }
    }

    fn request(kind: Kind, status: Option<u16>, write: Write, key: Option<&str>) -> RequestRecord {
        RequestRecord {
            client: 0,
            kind,
            key: key.map(str::to_owned),
            start: Duration::ZERO,
            latency: Duration::from_millis(5),
            status,
            code: None,
            error: None,
            deadline_exceeded: false,
            not_delivered: false,
            retry_after: false,
            write: Some(write),
        }
    }

    fn order(status: Option<u16>, key: &str, id: Option<i64>) -> RequestRecord {
        let write = Write::Order {
            buyer: BUYER,
            items: vec![(PRODUCT, 2)],
            id,
            total_cents: id.map(|_| 200),
        };
        request(Kind::Order, status, write, Some(key))
    }

    fn deposit(status: Option<u16>, cents: i64) -> RequestRecord {
        request(
            Kind::Deposit,
            status,
            Write::Deposit { user: OTHER, cents },
            None,
        )
    }

    fn transfer(status: Option<u16>, cents: i64, id: Option<i64>) -> RequestRecord {
        request(
            Kind::Transfer,
            status,
            Write::Transfer {
                from: BUYER,
                to: OTHER,
                cents,
                id,
            },
            None,
        )
    }

    /// The database after one order of 2 units (id 100, key k1) and one transfer of 0.05
    /// (id 200) from BUYER to OTHER, and the deposits of the fixture.
    fn consistent() -> (Vec<RequestRecord>, Snapshot) {
        let records = vec![
            order(Some(201), "k1", Some(100)),
            transfer(Some(201), 5, Some(200)),
            deposit(Some(200), 101),
        ];
        let mut snap = Snapshot::default();
        snap.orders
            .insert(100, (BUYER, Some("k1".into()), "paid".into(), 200));
        snap.by_key.insert((BUYER, "k1".into()), vec![100]);
        snap.items.insert(100, vec![(PRODUCT, 2)]);
        snap.transfers.insert(200, (BUYER, OTHER, 5));
        snap.balances.insert(BUYER, 10_000 - 200 - 5);
        snap.balances.insert(OTHER, 10_000 + 5 + 101);
        snap.balances.insert(SELLER, 200);
        snap.stock.insert(PRODUCT, 48);
        snap.sold.insert(PRODUCT, 2);
        snap.earned.insert(SELLER, 200);
        snap.spent.insert(BUYER, 200);
        (records, snap)
    }

    fn failing(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_consistent_database_passes_every_check() {
        let (records, snap) = consistent();
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(failing(&checks), Vec::<&str>::new(), "{checks:#?}");
    }

    #[test]
    fn an_acknowledged_order_that_is_not_stored_is_caught() {
        let (mut records, snap) = consistent();
        records.push(order(Some(201), "k2", Some(101)));
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(
            failing(&checks),
            ["every acknowledged write is in the database"]
        );
    }

    #[test]
    fn an_order_answered_with_an_error_that_was_stored_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(order(Some(503), "k2", None));
        snap.by_key.insert((BUYER, "k2".into()), vec![101]);
        snap.orders
            .insert(101, (BUYER, Some("k2".into()), "paid".into(), 0));
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(
            failing(&checks),
            ["every failed write left nothing (a resent order: exactly one)"]
        );
    }

    #[test]
    fn an_unanswered_order_may_have_been_stored_once() {
        let (mut records, mut snap) = consistent();
        records.push(order(None, "k2", None));
        snap.by_key.insert((BUYER, "k2".into()), vec![101]);
        snap.orders
            .insert(101, (BUYER, Some("k2".into()), "paid".into(), 0));
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(failing(&checks), Vec::<&str>::new(), "{checks:#?}");
    }

    #[test]
    fn a_refused_deposit_that_took_effect_is_caught_and_an_unanswered_one_is_not() {
        let (mut records, mut snap) = consistent();
        records.push(deposit(None, 102));
        records.push(deposit(Some(503), 103));
        *snap.balances.entry(OTHER).or_default() += 102;
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(failing(&checks), Vec::<&str>::new(), "{checks:#?}");
        *snap.balances.entry(OTHER).or_default() += 103;
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(
            failing(&checks),
            [
                "every failed write left nothing (a resent order: exactly one)",
                "the sum of balances equals the sum of deposits"
            ]
        );
    }

    #[test]
    fn a_lost_acknowledged_deposit_is_caught() {
        let (records, mut snap) = consistent();
        *snap.balances.entry(OTHER).or_default() -= 101;
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(
            failing(&checks),
            [
                "every acknowledged write is in the database",
                "the sum of balances equals the sum of deposits"
            ]
        );
    }

    #[test]
    fn stock_that_does_not_match_the_order_items_is_caught() {
        let (records, mut snap) = consistent();
        snap.stock.insert(PRODUCT, 47);
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(
            failing(&checks),
            ["stock sold equals the items of the orders not cancelled"]
        );
    }

    #[test]
    fn a_transfer_no_request_asked_for_is_caught() {
        let (records, mut snap) = consistent();
        snap.transfers.insert(201, (OTHER, BUYER, 7));
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert!(
            failing(&checks).contains(&"nothing is stored that no request asked for"),
            "{checks:#?}"
        );
    }

    #[test]
    fn a_resent_order_that_still_fails_or_made_another_order_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(order(Some(503), "k2", None));
        let still_failing = Resend {
            key: "k2".into(),
            buyer: BUYER,
            first: Outcome::Refused,
            attempts: 5,
            id: None,
            last_status: Some(503),
            last_code: None,
        };
        let checks = check_snapshot(
            &fixture(),
            &records,
            std::slice::from_ref(&still_failing),
            &snap,
        );
        assert_eq!(
            failing(&checks),
            ["every failed keyed order, resent with its key, made exactly one order"]
        );

        let other_id = Resend {
            id: Some(102),
            ..still_failing
        };
        snap.by_key.insert((BUYER, "k2".into()), vec![101]);
        snap.orders
            .insert(101, (BUYER, Some("k2".into()), "paid".into(), 0));
        let checks = check_snapshot(&fixture(), &records, &[other_id], &snap);
        assert!(
            failing(&checks)
                .contains(&"every failed keyed order, resent with its key, made exactly one order"),
            "{checks:#?}"
        );
    }

    #[test]
    fn a_subset_sum_is_found_with_the_fewest_amounts() {
        assert_eq!(subset_of(&[101, 102, 203], 203), Some(1));
        assert_eq!(subset_of(&[101, 102], 203), Some(2));
        assert_eq!(subset_of(&[101, 102], 0), Some(0));
        assert_eq!(subset_of(&[101, 102], 104), None);
        assert_eq!(subset_of(&[], 1), None);
        assert_eq!(subset_of(&[5], -5), None);
    }
}
