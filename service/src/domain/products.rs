//! Products and their stock: the inputs that create and search them, and the product as the rest
//! of the application sees it (with its current stock, which lives in the `inventory` table).

use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::{money::Money, text};
use crate::ServiceError;

/// A stock-keeping unit: 1 to 64 characters, unique across all products, kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: impl Into<String>) -> Result<Sku, ServiceError> {
        text::bounded("sku", text.into(), 1, Self::MAX_CHARS).map(Sku)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's name: 1 to 200 characters, kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: impl Into<String>) -> Result<ProductName, ServiceError> {
        text::bounded("name", text.into(), 1, Self::MAX_CHARS).map(ProductName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many of a product are in stock when it is created: 0 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock(i32);

impl Stock {
    pub const MAX: i32 = 1_000_000;

    pub fn new(count: i64) -> Result<Stock, ServiceError> {
        match i32::try_from(count) {
            Ok(count) if (0..=Stock::MAX).contains(&count) => Ok(Stock(count)),
            _ => Err(ServiceError::validation(
                "stock",
                format!("must be a whole number from 0 to {}", Stock::MAX),
            )),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// What creating a product needs; the caller is the seller.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub price: Money,
    pub stock: Stock,
}

/// A product with its current stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price: Money,
    pub stock: i32,
    pub seller_id: i64,
    pub created_at: DateTime<Utc>,
}

/// The columns a product search may be sorted by: an allowlist, so no caller-supplied text ever
/// becomes an SQL identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductSort {
    Name,
    Price,
    #[default]
    CreatedAt,
}

impl ProductSort {
    /// Parses `name`, `price` or `created_at`; anything else is a validation error on `sort`.
    pub fn parse(text: &str) -> Result<ProductSort, ServiceError> {
        match text {
            "name" => Ok(ProductSort::Name),
            "price" => Ok(ProductSort::Price),
            "created_at" => Ok(ProductSort::CreatedAt),
            _ => Err(ServiceError::validation(
                "sort",
                "must be one of name, price, created_at",
            )),
        }
    }
}

impl FromStr for ProductSort {
    type Err = ServiceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ProductSort::parse(text)
    }
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

impl SortOrder {
    /// Parses `asc` or `desc`; anything else is a validation error on `order`.
    pub fn parse(text: &str) -> Result<SortOrder, ServiceError> {
        match text {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            _ => Err(ServiceError::validation("order", "must be asc or desc")),
        }
    }
}

impl FromStr for SortOrder {
    type Err = ServiceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SortOrder::parse(text)
    }
}

/// A product search. `q` is a case-insensitive substring of the name in which `%`, `_` and `\`
/// match themselves; `limit` is 1 to 100. [`ProductQuery::default`] is the API's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductQuery {
    pub q: Option<String>,
    pub sort: ProductSort,
    pub order: SortOrder,
    pub limit: u64,
    pub offset: u64,
}

impl ProductQuery {
    pub const DEFAULT_LIMIT: u64 = 20;
    pub const MAX_LIMIT: u64 = 100;
    /// Past this no page can hold a row, and the value must still fit a signed 64-bit bind.
    pub const MAX_OFFSET: u64 = i64::MAX as u64;

    /// Checks the rules the fields' types cannot express.
    pub(crate) fn validate(&self) -> Result<(), ServiceError> {
        if !(1..=ProductQuery::MAX_LIMIT).contains(&self.limit) {
            return Err(ServiceError::validation(
                "limit",
                format!("must be from 1 to {}", ProductQuery::MAX_LIMIT),
            ));
        }
        if self.offset > ProductQuery::MAX_OFFSET {
            return Err(ServiceError::validation(
                "offset",
                format!("must be from 0 to {}", ProductQuery::MAX_OFFSET),
            ));
        }
        if let Some(q) = &self.q {
            // A substring longer than the longest name cannot match one.
            text::bounded("q", q.clone(), 0, ProductName::MAX_CHARS)?;
        }
        Ok(())
    }
}

impl Default for ProductQuery {
    fn default() -> Self {
        ProductQuery {
            q: None,
            sort: ProductSort::default(),
            order: SortOrder::default(),
            limit: ProductQuery::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// One page of a product search, and how many products match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> &'static str {
        match result {
            Err(ServiceError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn skus_and_names_have_bounded_lengths() {
        assert!(Sku::parse("A").is_ok());
        assert!(Sku::parse("😀".repeat(64)).is_ok());
        assert_eq!(field_of(Sku::parse("")), "sku");
        assert_eq!(field_of(Sku::parse("x".repeat(65))), "sku");
        assert!(ProductName::parse("n".repeat(200)).is_ok());
        assert_eq!(field_of(ProductName::parse("")), "name");
        assert_eq!(field_of(ProductName::parse("n".repeat(201))), "name");
        assert_eq!(field_of(ProductName::parse("a\0")), "name");
    }

    #[test]
    fn stock_is_zero_to_a_million() {
        assert_eq!(Stock::new(0).unwrap().get(), 0);
        assert_eq!(Stock::new(1_000_000).unwrap().get(), 1_000_000);
        for bad in [-1, 1_000_001, i64::MAX] {
            assert_eq!(field_of(Stock::new(bad)), "stock", "{bad}");
        }
    }

    #[test]
    fn sort_and_order_accept_only_their_allowlists() {
        assert_eq!("name".parse::<ProductSort>().unwrap(), ProductSort::Name);
        assert_eq!("price".parse::<ProductSort>().unwrap(), ProductSort::Price);
        assert_eq!(
            "created_at".parse::<ProductSort>().unwrap(),
            ProductSort::CreatedAt
        );
        assert_eq!("asc".parse::<SortOrder>().unwrap(), SortOrder::Asc);
        assert_eq!("desc".parse::<SortOrder>().unwrap(), SortOrder::Desc);
        for bad in ["", "Name", "id", "name; DROP TABLE products", "seller_id"] {
            assert_eq!(field_of(bad.parse::<ProductSort>()), "sort", "{bad}");
        }
        for bad in ["", "ASC", "up"] {
            assert_eq!(field_of(bad.parse::<SortOrder>()), "order", "{bad}");
        }
    }

    #[test]
    fn the_default_query_is_newest_first_twenty_at_a_time() {
        let query = ProductQuery::default();
        assert_eq!(
            (query.sort, query.order, query.limit, query.offset),
            (ProductSort::CreatedAt, SortOrder::Desc, 20, 0)
        );
        assert!(query.validate().is_ok());
    }

    #[test]
    fn a_query_outside_its_bounds_is_refused_naming_the_field() {
        let with = |change: fn(&mut ProductQuery)| {
            let mut query = ProductQuery::default();
            change(&mut query);
            query.validate()
        };
        assert_eq!(field_of(with(|q| q.limit = 0)), "limit");
        assert_eq!(field_of(with(|q| q.limit = 101)), "limit");
        assert_eq!(field_of(with(|q| q.offset = u64::MAX)), "offset");
        assert_eq!(field_of(with(|q| q.q = Some("a\0".into()))), "q");
        assert!(with(|q| q.limit = 100).is_ok());
    }
}
