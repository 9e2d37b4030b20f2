//! Money: an exact decimal amount of at most two decimal places, never negative.
//!
//! Money travels as a decimal *string* (`"7"`, `"7.5"`, `"12.50"`), never as a float, and is
//! always shown with two places. Inside it is a [`Decimal`] held at scale 2, so arithmetic is
//! exact; the database stores `numeric(14,2)` (SQLite: REAL, rounded to cents by every update).

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::ServiceError;

/// An amount of money: `0.00` up to [`Money::MAX`], exactly two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

/// The largest amount a single deposit, transfer or price may be.
const LIMIT_PER_OPERATION: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2);

impl Money {
    pub const ZERO: Money = Money(Decimal::from_parts(0, 0, 0, false, 2));
    /// The largest amount a single deposit, transfer or price may be: 1000000.00.
    pub const MAX_PER_OPERATION: Money = Money(LIMIT_PER_OPERATION);
    /// The largest value a `numeric(14,2)` column holds: 999999999999.99.
    pub const MAX: Money = Money(Decimal::from_parts(
        // 99_999_999_999_999 cents, split into the low and middle 32 bits.
        (99_999_999_999_999_u64 & 0xFFFF_FFFF) as u32,
        (99_999_999_999_999_u64 >> 32) as u32,
        0,
        false,
        2,
    ));

    /// An amount to deposit or transfer: more than 0, at most 1000000.00.
    pub fn amount(text: &str) -> Result<Money, ServiceError> {
        Money::parse("amount", text)?.ensure_amount()
    }

    /// `self` if it is a valid amount to deposit or transfer: more than 0, at most 1000000.00.
    pub fn ensure_amount(self) -> Result<Money, ServiceError> {
        if self == Money::ZERO {
            return Err(ServiceError::validation("amount", "must be more than 0"));
        }
        self.at_most_limit("amount")
    }

    /// A product's price: 0 to 1000000.00.
    pub fn price(text: &str) -> Result<Money, ServiceError> {
        Money::parse("price", text)?.ensure_price()
    }

    /// `self` if it is a valid price: at most 1000000.00.
    pub fn ensure_price(self) -> Result<Money, ServiceError> {
        self.at_most_limit("price")
    }

    /// Any amount of money written as digits with an optional `.` and one or two decimals: no
    /// sign, no exponent, no spaces. `field` names the input in the error.
    pub fn parse(field: &'static str, text: &str) -> Result<Money, ServiceError> {
        let (whole, cents) = text.split_once('.').unwrap_or((text, ""));
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let well_formed = !whole.is_empty()
            && is_digits(whole)
            && is_digits(cents)
            && (!text.contains('.') || (1..=2).contains(&cents.len()));
        if !well_formed {
            return Err(ServiceError::validation(
                field,
                "must be a decimal string with 0 to 2 decimal places, like \"7\", \"7.5\" or \"12.50\"",
            ));
        }
        // Leading zeros aside, more than 12 whole digits cannot fit; refuse before parsing.
        if whole.trim_start_matches('0').len() > 12 {
            return Err(ServiceError::validation(
                field,
                format!("must be at most {}", Money::MAX),
            ));
        }
        let decimal = Decimal::from_str(text).map_err(|_| {
            ServiceError::validation(field, "must be a decimal string like \"12.50\"")
        })?;
        Money::try_from(decimal)
            .map_err(|_| ServiceError::validation(field, format!("must be at most {}", Money::MAX)))
    }

    /// The value as an exact decimal at scale 2, ready to bind as a parameter.
    pub fn as_decimal(&self) -> Decimal {
        self.0
    }

    /// Reads an amount the database stored. SQLite hands money back through `f64`, so the value
    /// is rounded to the cent it was written as.
    pub(crate) fn from_stored(stored: Decimal) -> Result<Money, ServiceError> {
        Money::try_from(stored.round_dp(2)).map_err(|_| ServiceError::Unexpected {
            context: "reading an amount of money from the database",
            source: format!("stored amount {stored} is not valid money").into(),
        })
    }

    /// `self + other`, or `None` past [`Money::MAX`].
    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::try_from(self.0.checked_add(other.0)?).ok()
    }

    /// `self × quantity`, or `None` past [`Money::MAX`].
    pub fn checked_mul(self, quantity: i64) -> Option<Money> {
        Money::try_from(self.0.checked_mul(Decimal::from(quantity))?).ok()
    }

    fn at_most_limit(self, field: &'static str) -> Result<Money, ServiceError> {
        if self.0 > LIMIT_PER_OPERATION {
            return Err(ServiceError::validation(
                field,
                format!("must be at most {LIMIT_PER_OPERATION}"),
            ));
        }
        Ok(self)
    }
}

/// Why a [`Decimal`] is not money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotMoney {
    #[error("money is never negative")]
    Negative,
    #[error("money has at most two decimal places")]
    TooPrecise,
    #[error("money is at most 999999999999.99")]
    TooLarge,
}

impl TryFrom<Decimal> for Money {
    type Error = NotMoney;

    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(NotMoney::Negative);
        }
        if value.normalize().scale() > 2 {
            return Err(NotMoney::TooPrecise);
        }
        let mut exact = value;
        exact.set_sign_positive(true);
        exact.rescale(2);
        if exact > Money::MAX.0 {
            return Err(NotMoney::TooLarge);
        }
        Ok(Money(exact))
    }
}

impl fmt::Display for Money {
    /// Always two decimal places: `12.50`, `0.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    /// As a JSON string with two decimal places, never a JSON number.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Money moved from one user's account to another's, and what the sender has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: i64,
    pub from_user_id: i64,
    pub to_user_id: i64,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    /// The sender's balance right after the transfer.
    pub sender_balance: Money,
}

impl Transfer {
    /// Whether this transfer sent `amount` to `to_user_id`, which is all a request for one says
    /// besides its sender: decides whether a repeated idempotency key is a replay or a reuse.
    pub fn matches_request(&self, to_user_id: i64, amount: Money) -> bool {
        self.to_user_id == to_user_id && self.amount == amount
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str) -> Money {
        Money::parse("amount", text).unwrap()
    }

    #[test]
    fn zero_one_or_two_decimal_places_are_accepted_and_shown_with_two() {
        for (sent, shown) in [
            ("7", "7.00"),
            ("7.5", "7.50"),
            ("12.50", "12.50"),
            ("0", "0.00"),
            ("0.01", "0.01"),
            ("007.10", "7.10"),
            ("999999999999.99", "999999999999.99"),
        ] {
            assert_eq!(money(sent).to_string(), shown, "{sent}");
        }
    }

    #[test]
    fn malformed_money_is_refused_naming_the_field() {
        for bad in [
            "",
            ".5",
            "7.",
            "7.505",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1e3",
            "1,50",
            "abc",
            "1.2.3",
            "٣",
            "NaN",
            "1000000000000",
            "99999999999999999999999999999999",
        ] {
            let error = Money::parse("price", bad).unwrap_err();
            assert!(
                matches!(error, ServiceError::Validation { field: "price", .. }),
                "{bad:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn an_amount_is_more_than_zero_and_at_most_a_million() {
        assert!(Money::amount("0").is_err());
        assert!(Money::amount("0.00").is_err());
        assert_eq!(Money::amount("0.01").unwrap().to_string(), "0.01");
        assert_eq!(
            Money::amount("1000000.00").unwrap().to_string(),
            "1000000.00"
        );
        assert!(Money::amount("1000000.01").is_err());
    }

    #[test]
    fn a_price_is_zero_to_a_million() {
        assert_eq!(Money::price("0").unwrap(), Money::ZERO);
        assert!(Money::price("1000000").is_ok());
        assert!(Money::price("1000000.01").is_err());
    }

    #[test]
    fn money_serialises_as_a_string_with_two_places() {
        assert_eq!(serde_json::to_string(&money("7.5")).unwrap(), r#""7.50""#);
    }

    #[test]
    fn stored_amounts_read_back_through_f64_round_to_the_cent() {
        let through_float = Decimal::try_from(0.1_f64 + 0.2_f64).unwrap();
        assert_eq!(Money::from_stored(through_float).unwrap(), money("0.30"));
    }

    #[test]
    fn decimals_that_are_not_money_are_refused() {
        assert_eq!(
            Money::try_from(Decimal::new(-1, 2)),
            Err(NotMoney::Negative)
        );
        assert_eq!(
            Money::try_from(Decimal::new(1, 3)),
            Err(NotMoney::TooPrecise)
        );
        assert_eq!(
            Money::try_from(Decimal::new(100_000_000_000_000, 2)),
            Err(NotMoney::TooLarge)
        );
        assert_eq!(Money::try_from(Decimal::new(1500, 3)), Ok(money("1.50")));
    }

    #[test]
    fn a_transfer_matches_a_request_for_the_same_recipient_and_amount_only() {
        let sent = Transfer {
            id: 1,
            from_user_id: 3,
            to_user_id: 4,
            amount: money("7.50"),
            created_at: Utc::now(),
            sender_balance: money("2.50"),
        };
        assert!(sent.matches_request(4, money("7.5")));
        assert!(!sent.matches_request(5, money("7.50")));
        assert!(!sent.matches_request(4, money("7.51")));
    }

    #[test]
    fn arithmetic_is_exact_and_bounded() {
        assert_eq!(
            money("0.10").checked_add(money("0.20")),
            Some(money("0.30"))
        );
        assert_eq!(money("19.99").checked_mul(3), Some(money("59.97")));
        assert_eq!(Money::MAX.checked_add(money("0.01")), None);
    }
}
