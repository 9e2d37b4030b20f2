//! The invariants of a run, checked against the database itself with the suite's own SQL: what
//! the clients were told against what is stored.
//!
//! A request's answer says what is known of its effect (see [`Outcome`]): a 2xx must be in the
//! database; any other answer must have left nothing; no answer at all (a reset connection, a
//! killed process, a passed deadline) may have gone either way. Every write carries an
//! `Idempotency-Key` — the fixture's deposits too, with keys of their own (`setup-c{client}`) —
//! and each kind keeps its keys in its own table, unique per user: `orders` (per buyer), the
//! `deposits` ledger (per depositor) and `transfers` (per sender). So every row names the
//! request that made it: orders and transfers are found by the id their answer gave and by
//! their key, deposits (whose answer gives no id) by user, key and amount, and a row whose key
//! no request sent, or that has no key at all, was asked for by nobody. Money is checked from
//! both ends: the sum of balances against the ledger and the ledger against the deposits the
//! clients were told of, and each balance against its own deposits, transfers and orders.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
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

/// A row of the `deposits` ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DepositRow {
    user: i64,
    key: Option<String>,
    cents: i64,
    balance_after: i64,
}

/// A row of `transfers`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TransferRow {
    from: i64,
    to: i64,
    cents: i64,
    key: Option<String>,
    /// NULL only for transfers recorded before the column existed.
    sender_balance_after: Option<i64>,
}

/// The rows the invariants are about, read in one REPEATABLE READ snapshot.
#[derive(Debug, Default)]
struct Snapshot {
    /// id → (buyer, key, status, total in cents)
    orders: HashMap<i64, (i64, Option<String>, String, i64)>,
    /// order id → [(product, quantity)]
    items: HashMap<i64, Vec<(i64, i64)>>,
    /// id → the deposit
    deposits: HashMap<i64, DepositRow>,
    /// id → the transfer
    transfers: HashMap<i64, TransferRow>,
    /// (kind, user, key) → the ids of the rows holding that key: orders by buyer, deposits by
    /// depositor, transfers by sender
    by_key: HashMap<(Kind, i64, String), Vec<i64>>,
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

impl Snapshot {
    fn insert_order(&mut self, id: i64, buyer: i64, key: Option<&str>, status: &str, total: i64) {
        if let Some(key) = key {
            self.index_key(Kind::Order, buyer, key, id);
        }
        self.orders.insert(
            id,
            (buyer, key.map(str::to_owned), status.to_owned(), total),
        );
    }

    fn insert_deposit(&mut self, id: i64, row: DepositRow) {
        if let Some(key) = &row.key {
            self.index_key(Kind::Deposit, row.user, key, id);
        }
        self.deposits.insert(id, row);
    }

    fn insert_transfer(&mut self, id: i64, row: TransferRow) {
        if let Some(key) = &row.key {
            self.index_key(Kind::Transfer, row.from, key, id);
        }
        self.transfers.insert(id, row);
    }

    fn index_key(&mut self, kind: Kind, user: i64, key: &str, id: i64) {
        self.by_key
            .entry((kind, user, key.to_owned()))
            .or_default()
            .push(id);
    }

    /// The ids of the rows of `kind` that `user` holds under `key`.
    fn rows(&self, kind: Kind, user: i64, key: &str) -> &[i64] {
        self.by_key
            .get(&(kind, user, key.to_owned()))
            .map_or(&[], Vec::as_slice)
    }
}

/// A row of `transfers` as read: id, from, to, cents, key, the sender's balance after.
type TransferColumns = (i64, i64, i64, i64, Option<String>, Option<i64>);

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
        if status != "cancelled" {
            *snap.spent.entry(buyer).or_default() += total;
        }
        snap.insert_order(id, buyer, key.as_deref(), &status, total);
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

    let deposits: Vec<(i64, i64, Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT id, user_id, idempotency_key, (amount * 100)::bigint, \
                (balance_after * 100)::bigint \
         FROM deposits",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading deposits")?;
    for (id, user, key, cents, balance_after) in deposits {
        snap.insert_deposit(
            id,
            DepositRow {
                user,
                key,
                cents,
                balance_after,
            },
        );
    }

    let transfers: Vec<TransferColumns> = sqlx::query_as(
        "SELECT id, from_user_id, to_user_id, (amount * 100)::bigint, idempotency_key, \
                (sender_balance_after * 100)::bigint \
         FROM transfers",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading transfers")?;
    for (id, from, to, cents, key, sender_balance_after) in transfers {
        snap.insert_transfer(
            id,
            TransferRow {
                from,
                to,
                cents,
                key,
                sender_balance_after,
            },
        );
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

/// How many rows of `kind` (orders, deposits, transfers) `user` holds under `key`.
pub async fn rows_with_key(
    db: &mut PgConnection,
    kind: Kind,
    user: i64,
    key: &str,
) -> anyhow::Result<i64> {
    let sql = match kind {
        Kind::Order => "SELECT count(*) FROM orders WHERE buyer_id = $1 AND idempotency_key = $2",
        Kind::Deposit => {
            "SELECT count(*) FROM deposits WHERE user_id = $1 AND idempotency_key = $2"
        }
        Kind::Transfer => {
            "SELECT count(*) FROM transfers WHERE from_user_id = $1 AND idempotency_key = $2"
        }
        Kind::Read => bail!("a read has no key"),
    };
    sqlx::query_scalar(sql)
        .bind(user)
        .bind(key)
        .fetch_one(db)
        .await
        .with_context(|| format!("counting the {kind:?} rows of a key"))
}

/// A keyed write some request asked for: the fixture's deposits and the load's writes.
#[derive(Debug)]
struct Asked {
    write: Write,
    /// What is known of its effect, resending included: acknowledged if its first answer or a
    /// resend's was a 2xx, else what its first answer said.
    effect: Outcome,
}

/// (kind, user, key) → what was asked under that key.
type AskedByKey = HashMap<(Kind, i64, String), Asked>;

fn asked_by_key(fixture: &Fixture, records: &[RequestRecord], resends: &[Resend]) -> AskedByKey {
    let acked_on_resend: HashSet<(Kind, i64, &str)> = resends
        .iter()
        .filter(|r| r.acknowledged)
        .map(|r| (r.kind, r.user, r.key.as_str()))
        .collect();
    let mut asked = AskedByKey::new();
    for deposit in &fixture.setup_deposits {
        asked.insert(
            (Kind::Deposit, deposit.user, deposit.key.clone()),
            Asked {
                write: Write::Deposit {
                    user: deposit.user,
                    cents: deposit.cents,
                    balance_cents: None,
                },
                effect: Outcome::Acked,
            },
        );
    }
    for record in records {
        let (Some((kind, user, key)), Some(write)) = (record.keyed(), &record.write) else {
            continue;
        };
        let effect = if acked_on_resend.contains(&(kind, user, key)) {
            Outcome::Acked
        } else {
            record.outcome()
        };
        asked.insert(
            (kind, user, key.to_owned()),
            Asked {
                write: write.clone(),
                effect,
            },
        );
    }
    asked
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
    let asked = asked_by_key(fixture, records, resends);
    vec![
        acknowledged_writes_are_stored(fixture, records, resends, &asked, snap),
        failed_writes_left_nothing(records, resends, snap),
        nothing_is_stored_that_no_request_asked_for(&asked, snap),
        resent_writes_made_exactly_one_row_each(resends, snap),
        stock_sold_equals_the_items_of_orders_not_cancelled(fixture, snap),
        the_sum_of_balances_equals_the_ledger_of_deposits(&asked, snap),
        each_balance_is_explained_by_its_deposits_transfers_and_orders(snap),
    ]
}

/// Whether `user` holds a deposit row under `key` of `cents` (and, if given, that left
/// `balance`); the violation if not.
fn deposit_is_stored(
    snap: &Snapshot,
    user: i64,
    key: &str,
    cents: i64,
    balance: Option<i64>,
) -> Option<String> {
    let rows: Vec<&DepositRow> = snap
        .rows(Kind::Deposit, user, key)
        .iter()
        .filter_map(|id| snap.deposits.get(id))
        .collect();
    if rows.is_empty() {
        return Some(format!(
            "acknowledged deposit {key} of {} by user {user} is not in the ledger",
            money(cents)
        ));
    }
    if !rows.iter().any(|row| row.cents == cents) {
        return Some(format!(
            "deposit {key} of user {user} is in the ledger as {:?}, was acknowledged for {}",
            rows.iter().map(|r| money(r.cents)).collect::<Vec<_>>(),
            money(cents)
        ));
    }
    match balance {
        Some(balance) if !rows.iter().any(|row| row.balance_after == balance) => Some(format!(
            "deposit {key} of user {user} answered balance {}, its row says {:?}",
            money(balance),
            rows.iter()
                .map(|r| money(r.balance_after))
                .collect::<Vec<_>>()
        )),
        _ => None,
    }
}

fn acknowledged_writes_are_stored(
    fixture: &Fixture,
    records: &[RequestRecord],
    resends: &[Resend],
    asked: &AskedByKey,
    snap: &Snapshot,
) -> Check {
    let mut violations = Vec::new();
    let (mut orders, mut transfers, mut deposits, mut on_resend) = (0, 0, 0, 0);
    for record in records.iter().filter(|r| r.acked()) {
        let key = record.key.as_deref().unwrap_or("");
        match &record.write {
            Some(Write::Order {
                buyer,
                items,
                id,
                total_cents,
            }) => {
                orders += 1;
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
                balance_cents,
            }) => {
                transfers += 1;
                let Some(id) = id else {
                    violations.push(format!("transfer {key} acknowledged without an id"));
                    continue;
                };
                match snap.transfers.get(id) {
                    None => {
                        violations.push(format!("acknowledged transfer {id} ({key}) is not stored"))
                    }
                    Some(row) => {
                        if (row.from, row.to, row.cents, row.key.as_deref())
                            != (*from, *to, *cents, Some(key))
                        {
                            violations.push(format!(
                                "transfer {id} stored as {row:?}, acknowledged as {} from {from} \
                                 to {to} with key {key}",
                                money(*cents)
                            ));
                        }
                        if row.sender_balance_after != *balance_cents {
                            violations.push(format!(
                                "transfer {id} answered the sender's balance {:?}, its row says \
                                 {:?}",
                                balance_cents.map(money),
                                row.sender_balance_after.map(money)
                            ));
                        }
                    }
                }
            }
            Some(Write::Deposit {
                user,
                cents,
                balance_cents,
            }) => {
                deposits += 1;
                let Some(balance) = balance_cents else {
                    violations.push(format!("deposit {key} acknowledged without a balance"));
                    continue;
                };
                violations.extend(deposit_is_stored(snap, *user, key, *cents, Some(*balance)));
            }
            None => {}
        }
    }
    for deposit in &fixture.setup_deposits {
        violations.extend(deposit_is_stored(
            snap,
            deposit.user,
            &deposit.key,
            deposit.cents,
            None,
        ));
    }
    for resend in resends.iter().filter(|r| r.acknowledged) {
        on_resend += 1;
        let stored = match resend.kind {
            Kind::Order => resend
                .id
                .and_then(|id| snap.orders.get(&id))
                .map(|(buyer, key, _, _)| (*buyer, key.as_deref())),
            Kind::Transfer => resend
                .id
                .and_then(|id| snap.transfers.get(&id))
                .map(|row| (row.from, row.key.as_deref())),
            Kind::Deposit => {
                match asked.get(&(Kind::Deposit, resend.user, resend.key.clone())) {
                    Some(Asked {
                        write: Write::Deposit { cents, .. },
                        ..
                    }) => violations.extend(deposit_is_stored(
                        snap,
                        resend.user,
                        &resend.key,
                        *cents,
                        None,
                    )),
                    _ => violations.push(format!(
                        "deposit {} acknowledged on resend was never sent",
                        resend.key
                    )),
                }
                continue;
            }
            Kind::Read => None,
        };
        if stored != Some((resend.user, Some(resend.key.as_str()))) {
            violations.push(format!(
                "{:?} {:?} acknowledged on resend of {} by user {} is stored as {stored:?}",
                resend.kind, resend.id, resend.key, resend.user
            ));
        }
    }
    Check::new(
        "every acknowledged write is in the database",
        &violations,
        format!(
            "{orders} orders by id, key, total and items; {transfers} transfers by id, key, \
             amount and the sender's balance; {deposits} deposits by user, key, amount and \
             balance, and the fixture's {} by user, key and amount; {on_resend} acknowledged \
             on resend by id or key",
            fixture.setup_deposits.len()
        ),
    )
}

fn failed_writes_left_nothing(
    records: &[RequestRecord],
    resends: &[Resend],
    snap: &Snapshot,
) -> Check {
    let mut violations = Vec::new();
    let acked_on_resend: HashSet<(Kind, i64, &str)> = resends
        .iter()
        .filter(|r| r.acknowledged)
        .map(|r| (r.kind, r.user, r.key.as_str()))
        .collect();
    let (mut refused, mut lost, mut lost_applied, mut resent) = (0usize, 0usize, 0usize, 0usize);
    for record in records.iter().filter(|r| r.is_write() && !r.acked()) {
        let Some((kind, user, key)) = record.keyed() else {
            violations.push(format!("a {:?} was sent without a key", record.kind));
            continue;
        };
        if acked_on_resend.contains(&(kind, user, key)) {
            resent += 1;
            continue; // judged by resent_writes_made_exactly_one_row_each
        }
        match record.outcome() {
            Outcome::Refused => refused += 1,
            Outcome::Lost => lost += 1,
            Outcome::Acked => {}
        }
        match (record.outcome(), snap.rows(kind, user, key).len()) {
            (_, 0) => {}
            (Outcome::Lost, 1) => lost_applied += 1,
            (outcome, n) => violations.push(format!(
                "{kind:?} {key} of user {user}, {outcome:?} (status {:?} {:?}), left {n} row(s)",
                record.status, record.code
            )),
        }
    }
    Check::new(
        "every failed write left nothing (a resent one: exactly one)",
        &violations,
        format!(
            "by key: {refused} answered with an error (or never sent) left nothing; {lost} \
             unanswered, of which {lost_applied} took effect; {resent} acknowledged on resend \
             (judged by the resend check)"
        ),
    )
}

fn nothing_is_stored_that_no_request_asked_for(asked: &AskedByKey, snap: &Snapshot) -> Check {
    let mut violations = Vec::new();
    let asked_for = |kind: Kind, user: i64, key: &Option<String>| {
        key.as_ref()
            .and_then(|key| asked.get(&(kind, user, key.clone())))
            .map(|a| &a.write)
    };
    for (id, (buyer, key, _, _)) in &snap.orders {
        if asked_for(Kind::Order, *buyer, key).is_none() {
            violations.push(format!(
                "order {id} (buyer {buyer}, key {key:?}) was never asked for"
            ));
        }
    }
    for (id, row) in &snap.deposits {
        match asked_for(Kind::Deposit, row.user, &row.key) {
            Some(Write::Deposit { cents, .. }) if *cents == row.cents => {}
            Some(write) => {
                violations.push(format!("deposit {id} {row:?} was asked for as {write:?}"))
            }
            None => violations.push(format!("deposit {id} {row:?} was never asked for")),
        }
    }
    for (id, row) in &snap.transfers {
        match asked_for(Kind::Transfer, row.from, &row.key) {
            Some(Write::Transfer { to, cents, .. }) if (*to, *cents) == (row.to, row.cents) => {}
            Some(write) => {
                violations.push(format!("transfer {id} {row:?} was asked for as {write:?}"))
            }
            None => violations.push(format!("transfer {id} {row:?} was never asked for")),
        }
    }
    for ((kind, user, key), ids) in &snap.by_key {
        if ids.len() > 1 {
            violations.push(format!(
                "key {key} of user {user} holds {} {kind:?} rows: {ids:?}",
                ids.len()
            ));
        }
    }
    violations.sort();
    Check::new(
        "nothing is stored that no request asked for",
        &violations,
        format!(
            "{} orders, {} deposits and {} transfers stored, each asked for once under its key",
            snap.orders.len(),
            snap.deposits.len(),
            snap.transfers.len()
        ),
    )
}

fn resent_writes_made_exactly_one_row_each(resends: &[Resend], snap: &Snapshot) -> Check {
    let mut violations = Vec::new();
    for resend in resends {
        let stored = snap.rows(resend.kind, resend.user, &resend.key);
        let what = format!("{:?} {} of user {}", resend.kind, resend.key, resend.user);
        if !resend.acknowledged {
            violations.push(format!(
                "{what} still fails after {} resend(s): {:?} {:?}",
                resend.attempts, resend.last_status, resend.last_code
            ));
            continue;
        }
        let expected = match (resend.kind, resend.id) {
            // A deposit's answer names no row: its key must hold exactly one.
            (Kind::Deposit, _) => stored.len() == 1,
            (_, Some(id)) => stored == [id],
            (_, None) => false,
        };
        if !expected {
            violations.push(format!(
                "{what} resent and acknowledged as {:?}, but its key holds {stored:?}",
                resend.id
            ));
        }
    }
    let count = |kind: Kind| resends.iter().filter(|r| r.kind == kind).count();
    let acked = resends.iter().filter(|r| r.acknowledged).count();
    Check::new(
        "every failed keyed write, resent with its key, made exactly one row",
        &violations,
        format!(
            "{} resent ({} orders, {} deposits, {} transfers), {acked} acknowledged, each key \
             holding one row",
            resends.len(),
            count(Kind::Order),
            count(Kind::Deposit),
            count(Kind::Transfer)
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

fn the_sum_of_balances_equals_the_ledger_of_deposits(asked: &AskedByKey, snap: &Snapshot) -> Check {
    let balances: i64 = snap.balances.values().sum();
    let ledger: i64 = snap.deposits.values().map(|d| d.cents).sum();
    let deposits_with = |effect: Outcome| {
        asked.values().filter_map(move |a| match a.write {
            Write::Deposit { cents, .. } if a.effect == effect => Some(cents),
            _ => None,
        })
    };
    let acked: i64 = deposits_with(Outcome::Acked).sum();
    let unanswered = deposits_with(Outcome::Lost).count();
    let (mut applied, mut applied_count) = (0, 0);
    for row in snap.deposits.values() {
        let Some(key) = &row.key else { continue };
        if let Some(a) = asked.get(&(Kind::Deposit, row.user, key.clone()))
            && a.effect == Outcome::Lost
        {
            applied += row.cents;
            applied_count += 1;
        }
    }
    let mut violations = Vec::new();
    if balances != ledger {
        violations.push(format!(
            "the balances add up to {}, the deposits ledger to {}",
            money(balances),
            money(ledger)
        ));
    }
    if ledger != acked + applied {
        violations.push(format!(
            "the ledger holds {}, but the acknowledged deposits are {} and the unanswered ones \
             in it {}",
            money(ledger),
            money(acked),
            money(applied)
        ));
    }
    Check::new(
        "the sum of balances equals the ledger of deposits acknowledged or unanswered",
        &violations,
        format!(
            "balances {} = ledger {} = acknowledged {} + {} of {unanswered} unanswered ({})",
            money(balances),
            money(ledger),
            money(acked),
            applied_count,
            money(applied)
        ),
    )
}

fn each_balance_is_explained_by_its_deposits_transfers_and_orders(snap: &Snapshot) -> Check {
    // user → deposited + received − sent + earned − spent
    let mut expected: HashMap<i64, i64> = HashMap::new();
    for row in snap.deposits.values() {
        *expected.entry(row.user).or_default() += row.cents;
    }
    for row in snap.transfers.values() {
        *expected.entry(row.to).or_default() += row.cents;
        *expected.entry(row.from).or_default() -= row.cents;
    }
    for (user, cents) in &snap.earned {
        *expected.entry(*user).or_default() += cents;
    }
    for (user, cents) in &snap.spent {
        *expected.entry(*user).or_default() -= cents;
    }
    for user in snap.balances.keys() {
        expected.entry(*user).or_default();
    }
    let mut violations = Vec::new();
    for (user, explained) in &expected {
        match snap.balances.get(user) {
            Some(balance) if balance == explained => {}
            balance => violations.push(format!(
                "user {user}: balance {:?}, but deposits, transfers and orders make {}",
                balance.copied().map(money),
                money(*explained)
            )),
        }
    }
    violations.sort();
    Check::new(
        "each balance is its deposits, transfers and orders",
        &violations,
        format!(
            "{} accounts over {} deposits, {} transfers and {} orders",
            snap.balances.len(),
            snap.deposits.len(),
            snap.transfers.len(),
            snap.orders.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::{Product, SetupDeposit, User};

    const BUYER: i64 = 1;
    const OTHER: i64 = 2;
    const SELLER: i64 = 3;
    const PRODUCT: i64 = 10;

    const ACKNOWLEDGED: &str = "every acknowledged write is in the database";
    const FAILED: &str = "every failed write left nothing (a resent one: exactly one)";
    const UNASKED: &str = "nothing is stored that no request asked for";
    const RESENT: &str = "every failed keyed write, resent with its key, made exactly one row";
    const STOCK: &str = "stock sold equals the items of the orders not cancelled";
    const SUM: &str =
        "the sum of balances equals the ledger of deposits acknowledged or unanswered";
    const EACH_BALANCE: &str = "each balance is its deposits, transfers and orders";

    fn user(id: i64) -> User {
        User {
            id,
            token: String::new(),
        }
    }

    fn fixture() -> Fixture {
        let setup = |user, key: &str| SetupDeposit {
            user,
            key: key.to_owned(),
            cents: 10_000,
        };
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
            setup_deposits: vec![setup(BUYER, "setup-c0"), setup(OTHER, "setup-c1")],
        }
    }

    fn request(kind: Kind, status: Option<u16>, write: Write, key: &str) -> RequestRecord {
        RequestRecord {
            client: 0,
            kind,
            key: Some(key.to_owned()),
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
        request(Kind::Order, status, write, key)
    }

    /// A deposit by OTHER; `balance` is what its answer said, if it was acknowledged.
    fn deposit(status: Option<u16>, key: &str, cents: i64, balance: Option<i64>) -> RequestRecord {
        let write = Write::Deposit {
            user: OTHER,
            cents,
            balance_cents: balance,
        };
        request(Kind::Deposit, status, write, key)
    }

    /// A transfer from BUYER to OTHER.
    fn transfer(
        status: Option<u16>,
        key: &str,
        cents: i64,
        answer: Option<(i64, i64)>,
    ) -> RequestRecord {
        let write = Write::Transfer {
            from: BUYER,
            to: OTHER,
            cents,
            id: answer.map(|(id, _)| id),
            balance_cents: answer.map(|(_, balance)| balance),
        };
        request(Kind::Transfer, status, write, key)
    }

    fn deposit_row(user: i64, key: Option<&str>, cents: i64, balance_after: i64) -> DepositRow {
        DepositRow {
            user,
            key: key.map(str::to_owned),
            cents,
            balance_after,
        }
    }

    fn transfer_row(from: i64, to: i64, cents: i64, key: Option<&str>) -> TransferRow {
        TransferRow {
            from,
            to,
            cents,
            key: key.map(str::to_owned),
            sender_balance_after: None,
        }
    }

    /// A failed write resent with its key, as `resend_failed_writes` records it.
    fn resend(kind: Kind, key: &str, user: i64, acknowledged: Option<Option<i64>>) -> Resend {
        Resend {
            kind,
            key: key.to_owned(),
            user,
            first: Outcome::Refused,
            attempts: if acknowledged.is_some() { 1 } else { 5 },
            acknowledged: acknowledged.is_some(),
            id: acknowledged.flatten(),
            last_status: Some(if acknowledged.is_some() { 201 } else { 503 }),
            last_code: None,
        }
    }

    /// The database after the fixture's deposits (ids 1 and 2), one order of 2 units (id 100,
    /// key k1), one transfer of 0.05 (id 200, key t1) from BUYER to OTHER and one deposit of
    /// 1.01 (id 3, key d1) by OTHER.
    fn consistent() -> (Vec<RequestRecord>, Snapshot) {
        let records = vec![
            order(Some(201), "k1", Some(100)),
            transfer(Some(201), "t1", 5, Some((200, 9_795))),
            deposit(Some(200), "d1", 101, Some(10_106)),
        ];
        let mut snap = Snapshot::default();
        snap.insert_deposit(1, deposit_row(BUYER, Some("setup-c0"), 10_000, 10_000));
        snap.insert_deposit(2, deposit_row(OTHER, Some("setup-c1"), 10_000, 10_000));
        snap.insert_order(100, BUYER, Some("k1"), "paid", 200);
        snap.items.insert(100, vec![(PRODUCT, 2)]);
        snap.insert_transfer(
            200,
            TransferRow {
                sender_balance_after: Some(9_795),
                ..transfer_row(BUYER, OTHER, 5, Some("t1"))
            },
        );
        snap.insert_deposit(3, deposit_row(OTHER, Some("d1"), 101, 10_106));
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

    fn failing_on(records: &[RequestRecord], resends: &[Resend], snap: &Snapshot) -> Vec<String> {
        failing(&check_snapshot(&fixture(), records, resends, snap))
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_consistent_database_passes_every_check() {
        let (records, snap) = consistent();
        let checks = check_snapshot(&fixture(), &records, &[], &snap);
        assert_eq!(failing(&checks), Vec::<&str>::new(), "{checks:#?}");
        assert_eq!(checks.len(), 7);
    }

    #[test]
    fn an_acknowledged_order_that_is_not_stored_is_caught() {
        let (mut records, snap) = consistent();
        records.push(order(Some(201), "k2", Some(101)));
        assert_eq!(failing_on(&records, &[], &snap), [ACKNOWLEDGED]);
    }

    #[test]
    fn an_order_answered_with_an_error_that_was_stored_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(order(Some(503), "k2", None));
        snap.insert_order(101, BUYER, Some("k2"), "paid", 0);
        assert_eq!(failing_on(&records, &[], &snap), [FAILED]);
    }

    #[test]
    fn an_unanswered_order_may_have_been_stored_once() {
        let (mut records, mut snap) = consistent();
        records.push(order(None, "k2", None));
        snap.insert_order(101, BUYER, Some("k2"), "paid", 0);
        assert_eq!(failing_on(&records, &[], &snap), Vec::<String>::new());
    }

    #[test]
    fn an_acknowledged_deposit_missing_from_the_ledger_is_caught() {
        let (records, mut snap) = consistent();
        snap.deposits.remove(&3);
        snap.by_key.remove(&(Kind::Deposit, OTHER, "d1".to_owned()));
        assert_eq!(
            failing_on(&records, &[], &snap),
            [ACKNOWLEDGED, SUM, EACH_BALANCE]
        );
    }

    #[test]
    fn an_acknowledged_deposit_stored_with_another_amount_or_balance_is_caught() {
        let (records, mut snap) = consistent();
        snap.deposits
            .insert(3, deposit_row(OTHER, Some("d1"), 101, 10_105));
        assert_eq!(failing_on(&records, &[], &snap), [ACKNOWLEDGED]);
        snap.deposits
            .insert(3, deposit_row(OTHER, Some("d1"), 102, 10_106));
        *snap.balances.entry(OTHER).or_default() += 1;
        assert_eq!(
            failing_on(&records, &[], &snap),
            [ACKNOWLEDGED, UNASKED, SUM]
        );
    }

    #[test]
    fn a_balance_short_of_its_deposits_is_caught() {
        let (records, mut snap) = consistent();
        *snap.balances.entry(OTHER).or_default() -= 101;
        assert_eq!(failing_on(&records, &[], &snap), [SUM, EACH_BALANCE]);
    }

    #[test]
    fn an_unanswered_deposit_may_be_in_the_ledger_once() {
        let (mut records, mut snap) = consistent();
        records.push(deposit(None, "d2", 102, None));
        snap.insert_deposit(4, deposit_row(OTHER, Some("d2"), 102, 10_208));
        *snap.balances.entry(OTHER).or_default() += 102;
        assert_eq!(failing_on(&records, &[], &snap), Vec::<String>::new());
    }

    #[test]
    fn a_refused_keyed_deposit_that_left_a_row_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(deposit(Some(503), "d2", 103, None));
        assert_eq!(failing_on(&records, &[], &snap), Vec::<String>::new());
        snap.insert_deposit(4, deposit_row(OTHER, Some("d2"), 103, 10_209));
        *snap.balances.entry(OTHER).or_default() += 103;
        assert_eq!(failing_on(&records, &[], &snap), [FAILED, SUM]);
    }

    #[test]
    fn a_deposit_row_no_request_asked_for_is_caught() {
        let (records, mut snap) = consistent();
        snap.insert_deposit(4, deposit_row(OTHER, Some("d9"), 250, 10_356));
        *snap.balances.entry(OTHER).or_default() += 250;
        assert_eq!(failing_on(&records, &[], &snap), [UNASKED, SUM]);

        let (records, mut snap) = consistent();
        snap.insert_deposit(4, deposit_row(OTHER, None, 250, 10_356));
        *snap.balances.entry(OTHER).or_default() += 250;
        assert_eq!(failing_on(&records, &[], &snap), [UNASKED, SUM]);
    }

    #[test]
    fn an_acknowledged_transfer_stored_without_its_key_or_balance_is_caught() {
        let (records, mut snap) = consistent();
        snap.transfers
            .insert(200, transfer_row(BUYER, OTHER, 5, Some("t1")));
        assert_eq!(failing_on(&records, &[], &snap), [ACKNOWLEDGED]);
        snap.transfers.insert(
            200,
            TransferRow {
                sender_balance_after: Some(9_795),
                ..transfer_row(BUYER, OTHER, 5, None)
            },
        );
        assert_eq!(failing_on(&records, &[], &snap), [ACKNOWLEDGED, UNASKED]);
    }

    #[test]
    fn a_transfer_no_request_asked_for_is_caught() {
        let (records, mut snap) = consistent();
        snap.insert_transfer(201, transfer_row(OTHER, BUYER, 7, None));
        *snap.balances.entry(OTHER).or_default() -= 7;
        *snap.balances.entry(BUYER).or_default() += 7;
        assert_eq!(failing_on(&records, &[], &snap), [UNASKED]);
    }

    #[test]
    fn a_transfer_answered_with_an_error_that_was_stored_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(transfer(Some(409), "t2", 6, None));
        snap.insert_transfer(201, transfer_row(BUYER, OTHER, 6, Some("t2")));
        *snap.balances.entry(BUYER).or_default() -= 6;
        *snap.balances.entry(OTHER).or_default() += 6;
        assert_eq!(failing_on(&records, &[], &snap), [FAILED]);
    }

    #[test]
    fn a_resent_transfer_key_holding_two_rows_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(transfer(Some(503), "t2", 6, None));
        let resent = [resend(Kind::Transfer, "t2", BUYER, Some(Some(201)))];
        snap.insert_transfer(201, transfer_row(BUYER, OTHER, 6, Some("t2")));
        *snap.balances.entry(BUYER).or_default() -= 6;
        *snap.balances.entry(OTHER).or_default() += 6;
        assert_eq!(failing_on(&records, &resent, &snap), Vec::<String>::new());

        snap.insert_transfer(202, transfer_row(BUYER, OTHER, 6, Some("t2")));
        *snap.balances.entry(BUYER).or_default() -= 6;
        *snap.balances.entry(OTHER).or_default() += 6;
        assert_eq!(failing_on(&records, &resent, &snap), [UNASKED, RESENT]);
    }

    #[test]
    fn a_deposit_resent_and_acknowledged_must_be_in_the_ledger_once() {
        let (mut records, mut snap) = consistent();
        records.push(deposit(None, "d2", 102, None));
        let resent = [resend(Kind::Deposit, "d2", OTHER, Some(None))];
        assert_eq!(
            failing_on(&records, &resent, &snap),
            [ACKNOWLEDGED, RESENT, SUM]
        );
        snap.insert_deposit(4, deposit_row(OTHER, Some("d2"), 102, 10_208));
        *snap.balances.entry(OTHER).or_default() += 102;
        assert_eq!(failing_on(&records, &resent, &snap), Vec::<String>::new());
    }

    #[test]
    fn stock_that_does_not_match_the_order_items_is_caught() {
        let (records, mut snap) = consistent();
        snap.stock.insert(PRODUCT, 47);
        assert_eq!(failing_on(&records, &[], &snap), [STOCK]);
    }

    #[test]
    fn a_resent_order_that_still_fails_or_made_another_order_is_caught() {
        let (mut records, mut snap) = consistent();
        records.push(order(Some(503), "k2", None));
        let still_failing = resend(Kind::Order, "k2", BUYER, None);
        assert_eq!(
            failing_on(&records, std::slice::from_ref(&still_failing), &snap),
            [RESENT]
        );

        let other_id = resend(Kind::Order, "k2", BUYER, Some(Some(102)));
        snap.insert_order(101, BUYER, Some("k2"), "paid", 0);
        assert!(
            failing_on(&records, &[other_id], &snap).contains(&RESENT.to_owned()),
            "{snap:#?}"
        );
    }
}
