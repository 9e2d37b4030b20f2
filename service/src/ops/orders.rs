//! Operations on orders: placing one, cancelling one, and reading a buyer's orders.
//!
//! Placing an order is made safe to run concurrently and to repeat:
//!
//! 1. prices and sellers are read from the products, never taken from the request;
//! 2. the order row is inserted first, which claims the idempotency key: a concurrent request
//!    with the same key waits on the unique index, fails once this one commits, rolls back and
//!    returns this order;
//! 3. each line's stock is taken by a conditional `UPDATE … WHERE quantity >= $1` whose
//!    affected-row count is checked (the oversell guard), in product-id order;
//! 4. the buyer is debited the total (guarded the same way) and each seller credited their
//!    share, all in one `UPDATE … CASE` whose affected-row count is checked
//!    ([`repo::accounts::settle`]);
//! 5. the lines are written, and everything commits at once — or, on any failure, nothing does.
//!
//! Every operation that locks several rows takes them in one global order — the order row, then
//! inventory rows by product id, then accounts by user id — so no two of them can deadlock.

use std::collections::{BTreeMap, HashMap};

use entity::orders;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{
    ServiceError,
    db::{begin_write, commit, finish, reader},
    domain::{
        money::Money,
        orders::{Order, OrderItem, OrderLines, OrderStatus, PlaceOrder},
    },
    error::DbFailure,
    repo::{
        self,
        accounts::BalanceChange,
        orders::{ItemRow, OrderLineRow},
    },
    retry::{RetryPolicy, with_retry, with_retry_idempotent},
};

/// Places an order for `buyer_id`, all or nothing. Unknown product → `NotFound`; not enough
/// stock → `InsufficientStock { product_id }`; not enough money → `InsufficientFunds`. With an
/// idempotency key already used by this buyer: the same lines return the first order and change
/// nothing, other lines are `IdempotencyKeyReused`. Only a successful order binds its key.
// The key is the client's own text, not an id: only whether there is one is recorded.
#[tracing::instrument(
    level = "info",
    skip_all,
    fields(
        buyer_id = buyer_id,
        lines = request.lines.as_slice().len(),
        keyed = request.idempotency_key.is_some(),
    )
)]
pub async fn place_order(
    db: &DatabaseConnection,
    buyer_id: i64,
    request: PlaceOrder,
) -> Result<Order, ServiceError> {
    // With a key, running it again is safe even when a COMMIT's outcome is unknown: the next
    // run finds the committed order by its key and answers with it. Without one, it is not.
    let attempt = || place_once(db, buyer_id, &request);
    if request.idempotency_key.is_some() {
        with_retry_idempotent(RetryPolicy::default(), attempt).await
    } else {
        with_retry(RetryPolicy::reconnecting(), attempt).await
    }
}

/// A line of the request, priced from its product.
struct PricedLine {
    product_id: i64,
    name: String,
    quantity: i32,
    unit_price: Money,
    seller_id: i64,
}

async fn place_once(
    db: &DatabaseConnection,
    buyer_id: i64,
    request: &PlaceOrder,
) -> Result<Order, ServiceError> {
    let now = super::now();
    let key = request.idempotency_key.as_ref().map(|key| key.as_str());
    let txn = begin_write(db).await?;

    // A key seen before: answer from the first order, changing nothing.
    if let Some(key) = key
        && let Some(first) = repo::orders::find_by_key(&txn, buyer_id, key).await?
    {
        let first = load_order(&txn, first).await?;
        txn.rollback().await?;
        return replay(first, &request.lines);
    }

    let lines = price_lines(&txn, &request.lines).await?;
    let total = sum(lines.iter().map(|line| (line.unit_price, line.quantity)))?;

    // The order row goes first: it claims the idempotency key before anything else is touched.
    let order_id = match repo::orders::insert(&txn, buyer_id, total, key, now).await {
        Ok(order_id) => order_id,
        Err(error) if DbFailure::of(&error).violates(&repo::orders::IDEMPOTENCY_KEY_UNIQUE) => {
            // A concurrent request with this key committed first. Undo, then answer from its order.
            txn.rollback().await?;
            return replay_committed(db, buyer_id, key, &request.lines).await;
        }
        Err(error) => return Err(error.into()),
    };

    let mut by_product: Vec<&PricedLine> = lines.iter().collect();
    by_product.sort_by_key(|line| line.product_id);
    for line in by_product {
        if !repo::products::take_stock(&txn, line.product_id, line.quantity).await? {
            let refusal = Err(ServiceError::InsufficientStock {
                product_id: line.product_id,
            });
            return finish(txn, refusal).await;
        }
    }

    // The buyer pays the total and each seller is paid their share, in one statement. A buyer
    // of their own product needs the whole total first, as if paying before being paid.
    let shares = shares_by_seller(
        lines
            .iter()
            .map(|line| (line.seller_id, line.unit_price, line.quantity)),
    )?;
    let changes = settlement(buyer_id, (-total.as_decimal(), total), &shares, |share| {
        (share.as_decimal(), Money::ZERO)
    });
    if !repo::accounts::settle(&txn, &changes, now).await? {
        let refusal = Err(match first_missing_account(&txn, &changes).await? {
            Some(seller_id) if seller_id != buyer_id => {
                missing_account("crediting a seller", seller_id)
            }
            _ => ServiceError::InsufficientFunds,
        });
        return finish(txn, refusal).await;
    }

    let items: Vec<repo::orders::NewItem> = lines
        .iter()
        .map(|line| (line.product_id, line.quantity, line.unit_price))
        .collect();
    repo::orders::insert_items(&txn, order_id, &items).await?;
    commit(txn).await?;

    tracing::info!(order_id, buyer_id, %total, "placed an order");
    Ok(Order {
        id: order_id,
        status: OrderStatus::Paid,
        total,
        created_at: now.to_utc(),
        items: lines
            .into_iter()
            .map(|line| OrderItem {
                product_id: line.product_id,
                name: line.name,
                quantity: line.quantity,
                unit_price: line.unit_price,
            })
            .collect(),
    })
}

/// The request's lines, in the order sent, with each product's current price, name and seller:
/// one statement. A product that does not exist is `NotFound`.
async fn price_lines<C: ConnectionTrait>(
    db: &C,
    lines: &OrderLines,
) -> Result<Vec<PricedLine>, ServiceError> {
    let mut products: HashMap<i64, entity::products::Model> =
        repo::products::find_many(db, lines.product_ids())
            .await?
            .into_iter()
            .map(|product| (product.id, product))
            .collect();
    lines
        .as_slice()
        .iter()
        .map(|&(product_id, quantity)| {
            let product = products.remove(&product_id).ok_or(ServiceError::NotFound {
                resource: "product",
            })?;
            Ok(PricedLine {
                product_id,
                name: product.name,
                quantity: quantity.get(),
                unit_price: Money::from_stored(product.price)?,
                seller_id: product.seller_id,
            })
        })
        .collect()
}

/// The first order placed with a key, if `lines` are what it was placed with.
fn replay(first: Order, lines: &OrderLines) -> Result<Order, ServiceError> {
    if first.has_lines(lines) {
        Ok(first)
    } else {
        Err(ServiceError::IdempotencyKeyReused)
    }
}

/// Reads the order a concurrent request committed with `key`, after losing the race to it. Part
/// of a write, so on the pool (the primary), outside any transaction: once committed, an order
/// and its items never change but for the status, so the two statements need no one snapshot.
async fn replay_committed(
    db: &DatabaseConnection,
    buyer_id: i64,
    key: Option<&str>,
    lines: &OrderLines,
) -> Result<Order, ServiceError> {
    let winner = match key {
        Some(key) => repo::orders::find_by_key(db, buyer_id, key).await?,
        None => None,
    };
    tracing::debug!(
        buyer_id,
        "lost the race for an idempotency key; answering from the order that won"
    );
    let winner = winner.ok_or_else(|| ServiceError::Unexpected {
        context: "replaying an idempotent order",
        source: "the order holding the idempotency key could not be read".into(),
    })?;
    replay(load_order(db, winner).await?, lines)
}

/// Cancels the buyer's paid order, all or nothing: stock comes back, the buyer is refunded and
/// each seller gives their share back. Someone else's order is `NotFound`; an order already
/// cancelled, or one whose seller no longer has the money, is `OrderNotCancellable`. However
/// many cancels race, one refunds and the others find the order cancelled.
#[tracing::instrument(level = "info", skip_all, fields(buyer_id = buyer_id, order_id = order_id))]
pub async fn cancel_order(
    db: &DatabaseConnection,
    buyer_id: i64,
    order_id: i64,
) -> Result<Order, ServiceError> {
    with_retry(RetryPolicy::reconnecting(), || {
        cancel_once(db, buyer_id, order_id)
    })
    .await
}

async fn cancel_once(
    db: &DatabaseConnection,
    buyer_id: i64,
    order_id: i64,
) -> Result<Order, ServiceError> {
    let now = super::now();
    let txn = begin_write(db).await?;
    let result = async {
        // The status flip is the gate: only the cancel whose UPDATE changed the row goes on.
        if !repo::orders::mark_cancelled(&txn, buyer_id, order_id, now).await? {
            return match repo::orders::find_for_buyer(&txn, buyer_id, order_id).await? {
                None => Err(ServiceError::NotFound { resource: "order" }),
                Some(_) => Err(ServiceError::OrderNotCancellable {
                    reason: "it is already cancelled",
                }),
            };
        }
        let order = repo::orders::find_for_buyer(&txn, buyer_id, order_id)
            .await?
            .ok_or(ServiceError::NotFound { resource: "order" })?;
        let items = repo::orders::items_of_order(&txn, order_id).await?;

        let returns: Vec<(i64, i32)> = items
            .iter()
            .map(|item| (item.product_id, item.quantity))
            .collect();
        if !repo::products::return_stock(&txn, &returns).await? {
            return Err(ServiceError::Unexpected {
                context: "returning stock",
                source: "a product of the order has no inventory row".into(),
            });
        }

        // The buyer is refunded and each seller gives their share back, in one statement. A buyer
        // who is also a seller is refunded first, so their own share needs no cover.
        let total = Money::from_stored(order.total)?;
        let mut priced = Vec::with_capacity(items.len());
        for item in &items {
            priced.push((
                item.seller_id,
                Money::from_stored(item.unit_price)?,
                item.quantity,
            ));
        }
        let shares = shares_by_seller(priced.into_iter())?;
        let changes = settlement(
            buyer_id,
            (total.as_decimal(), Money::ZERO),
            &shares,
            |share| (-share.as_decimal(), share),
        );
        if !repo::accounts::settle(&txn, &changes, now).await? {
            return Err(match first_missing_account(&txn, &changes).await? {
                Some(user_id) => missing_account("settling a cancelled order", user_id),
                None => ServiceError::OrderNotCancellable {
                    reason: "a seller no longer has the money to give back",
                },
            });
        }

        order_from(order, items)
    }
    .await;
    let cancelled = finish(txn, result).await?;
    tracing::info!(order_id, buyer_id, "cancelled an order");
    Ok(cancelled)
}

/// The buyer's order with its items: one statement (`repo::orders::find_with_items`), so no
/// transaction is needed for the order and its items to agree. Someone else's order is
/// `NotFound`.
#[tracing::instrument(level = "info", skip_all, fields(buyer_id = buyer_id, order_id = order_id))]
pub async fn get_order(
    db: &DatabaseConnection,
    buyer_id: i64,
    order_id: i64,
) -> Result<Order, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || get_once(db, buyer_id, order_id)).await
}

async fn get_once(
    db: &DatabaseConnection,
    buyer_id: i64,
    order_id: i64,
) -> Result<Order, ServiceError> {
    let rows = repo::orders::find_with_items(reader(db), buyer_id, order_id).await?;
    orders_from_lines(&rows)?
        .pop()
        .ok_or(ServiceError::NotFound { resource: "order" })
}

/// All of the buyer's orders, newest first, each with its items: one statement however many
/// orders there are (`repo::orders::list_with_items`), so no transaction is needed for the
/// orders and their items to agree.
#[tracing::instrument(level = "info", skip_all, fields(buyer_id = buyer_id))]
pub async fn list_orders(
    db: &DatabaseConnection,
    buyer_id: i64,
) -> Result<Vec<Order>, ServiceError> {
    with_retry_idempotent(RetryPolicy::default(), || list_once(db, buyer_id)).await
}

async fn list_once(db: &DatabaseConnection, buyer_id: i64) -> Result<Vec<Order>, ServiceError> {
    let rows = repo::orders::list_with_items(reader(db), buyer_id).await?;
    orders_from_lines(&rows)
}

/// Orders from their joined rows, which come grouped by order (each order's rows adjacent) and
/// each order's lines in position order.
fn orders_from_lines(rows: &[OrderLineRow]) -> Result<Vec<Order>, ServiceError> {
    let mut orders: Vec<Order> = Vec::new();
    for row in rows {
        if orders.last().is_none_or(|order| order.id != row.id) {
            orders.push(Order {
                id: row.id,
                status: OrderStatus::from_stored(&row.status)?,
                total: Money::from_stored(row.total)?,
                created_at: row.created_at.to_utc(),
                items: Vec::new(),
            });
        }
        if let (Some(order), Some(product_id), Some(name), Some(quantity), Some(unit_price)) = (
            orders.last_mut(),
            row.product_id,
            &row.name,
            row.quantity,
            row.unit_price,
        ) {
            order.items.push(OrderItem {
                product_id,
                name: name.clone(),
                quantity,
                unit_price: Money::from_stored(unit_price)?,
            });
        }
    }
    Ok(orders)
}

async fn load_order<C: ConnectionTrait>(
    db: &C,
    order: orders::Model,
) -> Result<Order, ServiceError> {
    let items = repo::orders::items_of_order(db, order.id).await?;
    order_from(order, items)
}

/// Assembles an order from its row and its item rows (already in position order).
fn order_from(order: orders::Model, items: Vec<ItemRow>) -> Result<Order, ServiceError> {
    Ok(Order {
        id: order.id,
        status: OrderStatus::from_stored(&order.status)?,
        total: Money::from_stored(order.total)?,
        created_at: order.created_at.to_utc(),
        items: items
            .into_iter()
            .map(|item| {
                Ok(OrderItem {
                    product_id: item.product_id,
                    name: item.name,
                    quantity: item.quantity,
                    unit_price: Money::from_stored(item.unit_price)?,
                })
            })
            .collect::<Result<_, ServiceError>>()?,
    })
}

/// Σ unit price × quantity, exactly.
fn sum(mut lines: impl Iterator<Item = (Money, i32)>) -> Result<Money, ServiceError> {
    lines.try_fold(Money::ZERO, |total, (unit_price, quantity)| {
        unit_price
            .checked_mul(i64::from(quantity))
            .and_then(|amount| total.checked_add(amount))
            .ok_or_else(too_much_money)
    })
}

/// What each seller is owed for `(seller_id, unit_price, quantity)` lines, by seller id — the
/// order in which their accounts are locked.
fn shares_by_seller(
    lines: impl Iterator<Item = (i64, Money, i32)>,
) -> Result<BTreeMap<i64, Money>, ServiceError> {
    let mut shares: BTreeMap<i64, Money> = BTreeMap::new();
    for (seller_id, unit_price, quantity) in lines {
        let share = shares.entry(seller_id).or_insert(Money::ZERO);
        *share = sum([(*share, 1), (unit_price, quantity)].into_iter())?;
    }
    Ok(shares)
}

fn too_much_money() -> ServiceError {
    // 50 lines × 1000 items × 1000000.00 is far below the largest amount; this cannot happen.
    ServiceError::Unexpected {
        context: "adding up an order",
        source: "the amount exceeds the largest representable amount of money".into(),
    }
}

/// The balance changes of an order, one per account: the buyer's `(delta, required)`, plus each
/// seller's share turned into theirs by `seller`. A buyer who is also a seller gets one change:
/// both deltas added, the buyer's requirement kept.
fn settlement(
    buyer_id: i64,
    (buyer_delta, buyer_required): (Decimal, Money),
    shares: &BTreeMap<i64, Money>,
    seller: impl Fn(Money) -> (Decimal, Money),
) -> Vec<BalanceChange> {
    let mut buyer = BalanceChange {
        user_id: buyer_id,
        delta: buyer_delta,
        required: buyer_required,
    };
    let mut changes = Vec::with_capacity(shares.len() + 1);
    for (&user_id, &share) in shares {
        let (delta, required) = seller(share);
        if user_id == buyer_id {
            buyer.delta += delta;
        } else {
            changes.push(BalanceChange {
                user_id,
                delta,
                required,
            });
        }
    }
    changes.push(buyer);
    changes.sort_by_key(|change| change.user_id);
    changes
}

/// The first account of `changes` that does not exist: asked after a settlement did not apply,
/// to tell a missing account from a balance short of its requirement.
async fn first_missing_account<C: ConnectionTrait>(
    db: &C,
    changes: &[BalanceChange],
) -> Result<Option<i64>, ServiceError> {
    let accounts = repo::accounts::find_many(db, changes.iter().map(|c| c.user_id)).await?;
    Ok(changes
        .iter()
        .map(|change| change.user_id)
        .find(|&user_id| !accounts.iter().any(|account| account.user_id == user_id)))
}

fn missing_account(context: &'static str, user_id: i64) -> ServiceError {
    ServiceError::Unexpected {
        context,
        source: format!("user {user_id} has no account").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{products::NewProduct, users::NewUser};

    /// Compiles only if every operation's future may move between threads, as a
    /// multi-threaded runtime (and axum) requires — the reads' too, now that they hold their
    /// own transaction across awaits; it never needs to run.
    #[allow(dead_code)]
    fn operation_futures_are_send(
        db: &DatabaseConnection,
        user: NewUser,
        product: NewProduct,
        order: PlaceOrder,
        amount: Money,
        conversation: crate::domain::chat::NewConversation,
        message: crate::domain::chat::NewMessage,
    ) {
        fn send<T: Send>(_: T) {}
        send(crate::ops::users::register(db, user));
        send(crate::ops::users::issue_tokens(db, &[1]));
        send(crate::ops::users::authenticate(db, ""));
        send(crate::ops::users::get_user(db, 1));
        send(crate::ops::users::profile(db, 1));
        send(crate::ops::users::any_user_exists(db));
        send(crate::ops::money::deposit(db, 1, amount, None));
        send(crate::ops::money::transfer(db, 1, 2, amount, None));
        send(crate::ops::products::create_product(db, 1, product));
        send(crate::ops::products::get_product(db, 1));
        send(crate::ops::products::search_products(
            db,
            Default::default(),
        ));
        send(place_order(db, 1, order));
        send(cancel_order(db, 1, 1));
        send(get_order(db, 1, 1));
        send(list_orders(db, 1));
        send(crate::ops::conversations::create_conversation(
            db,
            1,
            conversation,
        ));
        send(crate::ops::conversations::list_conversations(db, 1));
        send(crate::ops::conversations::get_conversation(db, 1, 1));
        send(crate::ops::messages::post_message(db, 1, 1, message));
        send(crate::ops::messages::list_messages(
            db,
            1,
            1,
            Default::default(),
            None,
        ));
    }

    fn money(text: &str) -> Money {
        Money::parse("amount", text).unwrap()
    }

    #[test]
    fn the_total_is_the_exact_sum_of_price_times_quantity() {
        let lines = [(money("0.10"), 3), (money("19.99"), 2)];
        assert_eq!(sum(lines.into_iter()).unwrap(), money("40.28"));
        assert_eq!(sum(std::iter::empty()).unwrap(), Money::ZERO);
    }

    #[test]
    fn each_seller_is_owed_the_sum_of_their_lines_in_seller_id_order() {
        let lines = [
            (9, money("1.50"), 2),
            (4, money("0.01"), 1),
            (9, money("2.00"), 1),
        ];
        let shares: Vec<_> = shares_by_seller(lines.into_iter())
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(shares, vec![(4, money("0.01")), (9, money("5.00"))]);
    }
}
