//! Orders and their lines: the validated request that places an order, and the order as the
//! buyer sees it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{money::Money, text};
use crate::ServiceError;

/// How many of one product a line buys: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub const MIN: i32 = 1;
    pub const MAX: i32 = 1000;

    pub fn new(count: i64) -> Result<Quantity, ServiceError> {
        match i32::try_from(count) {
            Ok(count) if (Quantity::MIN..=Quantity::MAX).contains(&count) => Ok(Quantity(count)),
            _ => Err(ServiceError::validation(
                "quantity",
                format!(
                    "must be a whole number from {} to {}",
                    Quantity::MIN,
                    Quantity::MAX
                ),
            )),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// The lines of an order: 1 to 50, each product at most once, in the order the buyer sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<(i64, Quantity)>);

impl OrderLines {
    pub const MAX_LINES: usize = 50;

    /// `lines` as `(product_id, quantity)` pairs.
    pub fn new(lines: Vec<(i64, Quantity)>) -> Result<OrderLines, ServiceError> {
        if !(1..=OrderLines::MAX_LINES).contains(&lines.len()) {
            return Err(ServiceError::validation(
                "items",
                format!("must hold 1 to {} items", OrderLines::MAX_LINES),
            ));
        }
        let mut seen = HashSet::with_capacity(lines.len());
        if let Some((repeated, _)) = lines.iter().find(|(id, _)| !seen.insert(*id)) {
            return Err(ServiceError::validation(
                "items",
                format!("may name a product at most once (product {repeated} is repeated)"),
            ));
        }
        Ok(OrderLines(lines))
    }

    /// The lines in the order they were sent.
    pub fn as_slice(&self) -> &[(i64, Quantity)] {
        &self.0
    }

    pub fn product_ids(&self) -> Vec<i64> {
        self.0.iter().map(|(id, _)| *id).collect()
    }
}

/// A client-chosen key that makes placing an order, a deposit or a transfer safe to repeat: 1 to
/// 255 characters. Each kind of request has keys of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(text: impl Into<String>) -> Result<IdempotencyKey, ServiceError> {
        text::bounded("idempotency_key", text.into(), 1, Self::MAX_CHARS).map(IdempotencyKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A request to place an order.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub lines: OrderLines,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Paid,
    Cancelled,
}

impl OrderStatus {
    /// The value stored in `orders.status` (the check constraint `ck_orders_status` allows these).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn from_stored(stored: &str) -> Result<OrderStatus, ServiceError> {
        match stored {
            "paid" => Ok(OrderStatus::Paid),
            "cancelled" => Ok(OrderStatus::Cancelled),
            other => Err(ServiceError::Unexpected {
                context: "reading an order's status",
                source: format!("unknown order status {other:?}").into(),
            }),
        }
    }
}

/// One line of a placed order, at the price paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    pub quantity: i32,
    pub unit_price: Money,
}

/// An order as its buyer sees it; `items` are in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub status: OrderStatus,
    pub total: Money,
    pub created_at: DateTime<Utc>,
    pub items: Vec<OrderItem>,
}

impl Order {
    /// Whether this order was placed with exactly `lines`: same products, same quantities, same
    /// order. Decides whether a repeated idempotency key is a replay or a reuse.
    pub fn has_lines(&self, lines: &OrderLines) -> bool {
        self.items.len() == lines.as_slice().len()
            && self
                .items
                .iter()
                .zip(lines.as_slice())
                .all(|(item, (product_id, quantity))| {
                    item.product_id == *product_id && item.quantity == quantity.get()
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantity(n: i64) -> Quantity {
        Quantity::new(n).unwrap()
    }

    fn field_of<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> &'static str {
        match result {
            Err(ServiceError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn quantities_are_1_to_1000() {
        assert_eq!(quantity(1).get(), 1);
        assert_eq!(quantity(1000).get(), 1000);
        for bad in [0, -1, 1001, i64::MIN] {
            assert_eq!(field_of(Quantity::new(bad)), "quantity", "{bad}");
        }
    }

    #[test]
    fn an_order_has_1_to_50_lines() {
        assert_eq!(field_of(OrderLines::new(vec![])), "items");
        let fifty: Vec<_> = (1..=50).map(|id| (id, quantity(1))).collect();
        assert!(OrderLines::new(fifty).is_ok());
        let fifty_one: Vec<_> = (1..=51).map(|id| (id, quantity(1))).collect();
        assert_eq!(field_of(OrderLines::new(fifty_one)), "items");
    }

    #[test]
    fn a_product_appears_at_most_once() {
        let repeated = vec![(7, quantity(1)), (8, quantity(1)), (7, quantity(2))];
        assert_eq!(field_of(OrderLines::new(repeated)), "items");
    }

    #[test]
    fn lines_keep_the_order_they_were_sent_in() {
        let lines = OrderLines::new(vec![(9, quantity(1)), (3, quantity(2))]).unwrap();
        assert_eq!(lines.product_ids(), vec![9, 3]);
    }

    #[test]
    fn idempotency_keys_are_1_to_255_characters() {
        assert!(IdempotencyKey::parse("k").is_ok());
        assert!(IdempotencyKey::parse("k".repeat(255)).is_ok());
        assert_eq!(field_of(IdempotencyKey::parse("")), "idempotency_key");
        assert_eq!(
            field_of(IdempotencyKey::parse("k".repeat(256))),
            "idempotency_key"
        );
    }

    #[test]
    fn an_order_has_the_lines_it_was_placed_with_in_the_same_order_only() {
        let item = |product_id, quantity| OrderItem {
            product_id,
            name: String::new(),
            quantity,
            unit_price: Money::ZERO,
        };
        let order = Order {
            id: 1,
            status: OrderStatus::Paid,
            total: Money::ZERO,
            created_at: Utc::now(),
            items: vec![item(9, 1), item(3, 2)],
        };
        let same = OrderLines::new(vec![(9, quantity(1)), (3, quantity(2))]).unwrap();
        let reordered = OrderLines::new(vec![(3, quantity(2)), (9, quantity(1))]).unwrap();
        let other_quantity = OrderLines::new(vec![(9, quantity(2)), (3, quantity(2))]).unwrap();
        let fewer = OrderLines::new(vec![(9, quantity(1))]).unwrap();
        assert!(order.has_lines(&same));
        assert!(!order.has_lines(&reordered));
        assert!(!order.has_lines(&other_quantity));
        assert!(!order.has_lines(&fewer));
    }

    #[test]
    fn statuses_round_trip_through_their_stored_form() {
        for status in [OrderStatus::Paid, OrderStatus::Cancelled] {
            assert_eq!(OrderStatus::from_stored(status.as_str()).unwrap(), status);
        }
        assert!(OrderStatus::from_stored("shipped").is_err());
    }
}
