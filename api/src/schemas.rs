//! The JSON Schemas of the API's inputs, built from the constants of the service newtypes that
//! parse them (`Sku::MAX_CHARS`, `Stock::MAX`, `Money::MAX_PER_OPERATION`, ...), so that the
//! document states what the parsers accept and cannot drift from them. Request types point at
//! these with `#[schema(schema_with = ...)]` / `#[param(schema_with = ...)]`.
//!
//! A pattern is the one part a constant cannot carry: each is checked against its parser by the
//! tests below, on the boundary cases of both (a value one side of a bound, and the other).
//! Lengths count Unicode code points, as API.md and JSON Schema's `minLength` / `maxLength` do.
//! Text may hold anything but NUL, which every text pattern excludes. Patterns use `[0-9]`, not
//! `\d`, which some regex dialects take to mean any Unicode digit.

use service::domain::{
    chat::{MessageBody, MessageLimit, Title},
    money::Money,
    orders::{IdempotencyKey, OrderLines, Quantity},
    products::{ProductName, ProductQuery, Sku, Stock},
    users::{DisplayName, Email, Username},
};
use utoipa::openapi::{
    Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Ref, RefOr, SchemaFormat, Type,
    schema::SchemaType,
};

/// Any text without the NUL character.
pub(crate) const NO_NUL: &str = r"^[^\x00]*$";
/// 3 to 50 ASCII letters, digits, `_`, `.` or `-` (the length comes from [`Username`]).
pub(crate) const USERNAME_CHARACTERS: &str = "[A-Za-z0-9_.-]";
/// Exactly one `@`, text on both sides, no NUL.
pub(crate) const EMAIL: &str = r"^[^@\x00]+@[^@\x00]+$";
/// An `Idempotency-Key`: a header value, so visible ASCII, with spaces and tabs inside only.
pub(crate) const HEADER_TEXT: &str = r"^[!-~]([\t !-~]*[!-~])?$";
/// An LSN as a write's response gives it (`0/16B3748`): two hexadecimal parts of 1 to 8
/// characters, each of which may start with `+`, as `Lsn::from_str` reads them.
pub(crate) const LSN: &str =
    r"^(\+[0-9A-Fa-f]{1,7}|[0-9A-Fa-f]{1,8})/(\+[0-9A-Fa-f]{1,7}|[0-9A-Fa-f]{1,8})$";
/// The values of `sort` on `GET /products`, as `ProductSort::parse` reads them.
pub(crate) const PRODUCT_SORTS: [&str; 3] = ["name", "price", "created_at"];
/// The values of `order` on `GET /products`, as `SortOrder::parse` reads them.
pub(crate) const SORT_ORDERS: [&str; 2] = ["asc", "desc"];

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn nullable(builder: ObjectBuilder) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// Text of `min..=max` code points without NUL.
fn text(description: &str, min: usize, max: usize) -> ObjectBuilder {
    string(description)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(NO_NUL))
}

fn integer(description: &str, min: i64, max: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

/// An id: any 64-bit integer. One that names nothing is 404, never 422.
pub(crate) fn id(description: &str) -> ObjectBuilder {
    integer(description, i64::MIN, i64::MAX)
}

/// Money as a decimal string of 0 to 2 decimal places, from 0 (or, when `positive`, from 0.01)
/// to [`Money::MAX_PER_OPERATION`], leading zeros allowed, as `Money::parse` reads it.
pub(crate) fn money_pattern(positive: bool) -> String {
    let limit = Money::MAX_PER_OPERATION.as_decimal().trunc().to_string();
    // Below the limit: up to one digit fewer than it has (the limit is a power of ten, which
    // the tests check); at it: the limit itself, with zero cents.
    let shorter = limit.len() - 1;
    let below = if positive {
        format!(
            r"0*[1-9][0-9]{{0,{}}}(\.[0-9]{{1,2}})?|0+\.(0[1-9]|[1-9][0-9]?)",
            shorter - 1
        )
    } else {
        format!(r"0*[0-9]{{1,{shorter}}}(\.[0-9]{{1,2}})?")
    };
    format!(r"^({below}|0*{limit}(\.0{{1,2}})?)$")
}

/// `amount` of a deposit or a transfer.
pub(crate) fn amount() -> Object {
    string(&format!(
        "More than 0, at most \"{}\", with 0 to 2 decimal places: a decimal string, never a \
         JSON number.",
        Money::MAX_PER_OPERATION
    ))
    .pattern(Some(money_pattern(true)))
    .examples(["25.50"])
    .build()
}

/// `price` of a new product.
pub(crate) fn price() -> Object {
    string(&format!(
        "From \"0\" to \"{}\", with 0 to 2 decimal places: a decimal string, never a JSON number.",
        Money::MAX_PER_OPERATION
    ))
    .pattern(Some(money_pattern(false)))
    .examples(["12.50"])
    .build()
}

pub(crate) fn username() -> Object {
    string(&format!(
        "{} to {} ASCII letters, digits, `_`, `.` or `-`; unique, ignoring case.",
        Username::MIN_CHARS,
        Username::MAX_CHARS
    ))
    .min_length(Some(Username::MIN_CHARS))
    .max_length(Some(Username::MAX_CHARS))
    .pattern(Some(format!(
        "^{USERNAME_CHARACTERS}{{{},{}}}$",
        Username::MIN_CHARS,
        Username::MAX_CHARS
    )))
    .examples(["ann"])
    .build()
}

pub(crate) fn email() -> Object {
    string(&format!(
        "At most {} characters (also once lower-cased: a few characters, like `İ`, grow), \
         exactly one `@` with text on both sides; unique, ignoring case.",
        Email::MAX_CHARS
    ))
    // The shortest text with one `@` and text on both sides: `a@b`.
    .min_length(Some(3))
    .max_length(Some(Email::MAX_CHARS))
    .pattern(Some(EMAIL))
    .examples(["ann@example.com"])
    .build()
}

pub(crate) fn display_name() -> Object {
    nullable(text(
        &format!(
            "1 to {} characters; the username when absent or null.",
            DisplayName::MAX_CHARS
        ),
        1,
        DisplayName::MAX_CHARS,
    ))
    .examples(["Ann"])
    .build()
}

pub(crate) fn sku() -> Object {
    text(
        &format!(
            "1 to {} characters, unique across all products.",
            Sku::MAX_CHARS
        ),
        1,
        Sku::MAX_CHARS,
    )
    .examples(["MUG-001"])
    .build()
}

pub(crate) fn product_name() -> Object {
    text(
        &format!("1 to {} characters.", ProductName::MAX_CHARS),
        1,
        ProductName::MAX_CHARS,
    )
    .examples(["Blue mug"])
    .build()
}

pub(crate) fn stock() -> Object {
    integer(
        &format!("How many are in stock: 0 to {}.", Stock::MAX),
        0,
        i64::from(Stock::MAX),
    )
    .build()
}

pub(crate) fn quantity() -> Object {
    integer(
        &format!("{} to {}.", Quantity::MIN, Quantity::MAX),
        i64::from(Quantity::MIN),
        i64::from(Quantity::MAX),
    )
    .build()
}

pub(crate) fn product_id() -> Object {
    id("The product's id.").build()
}

pub(crate) fn to_user_id() -> Object {
    id("The recipient: another user than the caller (to oneself is 422).").build()
}

/// `items` of `POST /orders`: the lines, in a schema of their own.
pub(crate) fn order_items() -> Array {
    ArrayBuilder::new()
        .items(RefOr::Ref(Ref::from_schema_name("LineRequest")))
        .min_items(Some(1))
        .max_items(Some(OrderLines::MAX_LINES))
        .unique_items(true)
        .description(Some(format!(
            "1 to {} lines, kept in this order. Each product at most once: two lines with the \
             same `product_id` are 422 (JSON Schema's `uniqueItems` only says that two equal \
             lines are).",
            OrderLines::MAX_LINES
        )))
        .build()
}

pub(crate) fn title() -> Object {
    text(
        &format!("1 to {} characters; no NUL.", Title::MAX_CHARS),
        1,
        Title::MAX_CHARS,
    )
    .examples(["About the bike"])
    .build()
}

pub(crate) fn participant_ids() -> Array {
    ArrayBuilder::new()
        .items(id("A user's id."))
        .description(Some(
            "The other people in it. The caller always takes part; repeated ids count once; an \
             empty list makes a conversation of one. An unknown id is 404.",
        ))
        .examples([serde_json::json!([2, 3])])
        .build()
}

pub(crate) fn conversation_product_id() -> Object {
    id("The product the conversation is about, if any; an unknown one is 404.")
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .build()
}

pub(crate) fn message_body() -> Object {
    text(
        &format!(
            "1 to {} characters; no NUL. Stored exactly as sent.",
            MessageBody::MAX_CHARS
        ),
        1,
        MessageBody::MAX_CHARS,
    )
    .examples(["Is it still for sale?"])
    .build()
}

pub(crate) fn reply_to_id() -> Object {
    id("The message this one answers: a message of the same conversation, else 422.")
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .build()
}

/// `limit` of `GET /conversations/{id}/messages`.
pub(crate) fn message_limit() -> Object {
    integer(
        &format!(
            "How many messages, 1 to {} (default {}).",
            MessageLimit::MAX,
            MessageLimit::DEFAULT
        ),
        1,
        i64::from(MessageLimit::MAX),
    )
    .default(Some(MessageLimit::DEFAULT.into()))
    .build()
}

/// `before` of `GET /conversations/{id}/messages`.
pub(crate) fn before() -> Object {
    integer(
        "Only messages with an id below this one: the `next_before` of the previous page.",
        1,
        i64::MAX,
    )
    .build()
}

/// `q` of `GET /products`.
pub(crate) fn search_text() -> Object {
    text(
        &format!(
            "A piece of the name, ignoring case; `%`, `_` and `\\` match themselves. At most {} \
             characters.",
            ProductName::MAX_CHARS
        ),
        0,
        ProductName::MAX_CHARS,
    )
    .build()
}

/// `sort` of `GET /products`: the values `ProductSort::parse` accepts.
pub(crate) fn product_sort() -> Object {
    string("The column to sort by; ties are broken by id.")
        .enum_values(Some(PRODUCT_SORTS))
        .default(Some("created_at".into()))
        .build()
}

/// `order` of `GET /products`: the values `SortOrder::parse` accepts.
pub(crate) fn sort_order() -> Object {
    string("The direction to sort in.")
        .enum_values(Some(SORT_ORDERS))
        .default(Some("desc".into()))
        .build()
}

/// `limit` of `GET /products`.
pub(crate) fn product_limit() -> Object {
    integer(
        &format!(
            "How many products, 1 to {} (default {}).",
            ProductQuery::MAX_LIMIT,
            ProductQuery::DEFAULT_LIMIT
        ),
        1,
        i64::try_from(ProductQuery::MAX_LIMIT).unwrap_or(i64::MAX),
    )
    .default(Some(ProductQuery::DEFAULT_LIMIT.into()))
    .build()
}

/// `offset` of `GET /products`.
pub(crate) fn product_offset() -> Object {
    integer(
        "How many matching products to skip.",
        0,
        i64::try_from(ProductQuery::MAX_OFFSET).unwrap_or(i64::MAX),
    )
    .default(Some(0.into()))
    .build()
}

/// The `Idempotency-Key` header.
pub(crate) fn idempotency_key() -> Object {
    string(&format!(
        "1 to {} characters, chosen by the client, to make the request safe to repeat: visible \
         ASCII, with spaces or tabs only between visible characters (HTTP drops them at either \
         end). Keys belong to the caller, and each kind of request (order, deposit, transfer) \
         has keys of its own.",
        IdempotencyKey::MAX_CHARS
    ))
    .min_length(Some(1))
    .max_length(Some(IdempotencyKey::MAX_CHARS))
    .pattern(Some(HEADER_TEXT))
    .build()
}

/// The `x-read-after-lsn` request header.
pub(crate) fn read_after_lsn() -> Object {
    string(
        "The `x-read-after-lsn` of the caller's last write: with replica routing on, the read \
         sees that write. Without it, ignored; a value that is not an LSN is 422.",
    )
    .pattern(Some(LSN))
    .examples(["0/16B3748"])
    .build()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use regex::Regex;
    use service::{ServiceError, pools::Lsn};
    use utoipa::openapi::{Object, schema::SchemaType};

    use super::*;

    /// Whether `text` is a string `schema` allows: its pattern, and its lengths in code points.
    fn allows(schema: &Object, text: &str) -> bool {
        let length = text.chars().count();
        schema
            .pattern
            .as_deref()
            .is_none_or(|pattern| Regex::new(pattern).unwrap().is_match(text))
            && schema.min_length.is_none_or(|min| length >= min)
            && schema.max_length.is_none_or(|max| length <= max)
    }

    /// Asserts that `schema` allows exactly the texts `parse` accepts, among `corpus`.
    fn agrees<T>(
        name: &str,
        schema: &Object,
        parse: impl Fn(&str) -> Result<T, ServiceError>,
        corpus: &[String],
    ) {
        for text in corpus {
            assert_eq!(
                allows(schema, text),
                parse(text).is_ok(),
                "{name}: the schema and the parser disagree on {text:?}"
            );
        }
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|&text| text.to_owned()).collect()
    }

    /// Texts around the length bounds `min..=max`, of one-byte and of four-byte characters.
    fn around_lengths(min: usize, max: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for length in [min.saturating_sub(1), min, min + 1, max - 1, max, max + 1] {
            texts.push("a".repeat(length));
            texts.push("😀".repeat(length));
        }
        texts.extend(strings(&["a\0b", "\0", " padded ", "tab\tand\nnewline"]));
        texts
    }

    fn money_corpus() -> Vec<String> {
        let mut texts = strings(&[
            "",
            "0",
            "0.0",
            "0.00",
            "0.01",
            "0.1",
            "0.10",
            "0.001",
            "00.5",
            ".5",
            "5.",
            "1",
            "7.5",
            "12.50",
            "1.234",
            "999999.99",
            "1000000",
            "1000000.0",
            "1000000.00",
            "1000000.01",
            "1000000.1",
            "1000001",
            "01000000",
            "0001000000.00",
            "9999999",
            "10000000",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "١",
            "0x10",
            "1,5",
            "1..5",
            "999999999999.99",
            "9999999999999",
        ]);
        texts.push(format!("{}1", "0".repeat(40)));
        texts.push(format!("{}.05", "0".repeat(40)));
        texts.push(format!("{}1000000.00", "0".repeat(40)));
        texts
    }

    #[test]
    fn the_money_patterns_accept_exactly_the_amounts_and_prices_the_parser_does() {
        let corpus = money_corpus();
        agrees("amount", &amount(), Money::amount, &corpus);
        agrees("price", &price(), Money::price, &corpus);
    }

    #[test]
    fn the_username_and_email_schemas_accept_exactly_what_their_parsers_do() {
        let mut usernames = around_lengths(Username::MIN_CHARS, Username::MAX_CHARS);
        usernames.extend(strings(&[
            "Ann.Lee-2_x",
            "ann lee",
            "ann@x",
            "änn",
            "a😀c",
            "a/b",
        ]));
        agrees(
            "username",
            &username(),
            |text: &str| Username::parse(text.to_owned()),
            &usernames,
        );

        let mut emails = strings(&[
            "",
            "a@b",
            "@b",
            "a@",
            "a@@b",
            "a@b@c",
            "a\0@b",
            "ünïcødé@exämple.org",
            "a @b",
        ]);
        for length in [Email::MAX_CHARS - 1, Email::MAX_CHARS, Email::MAX_CHARS + 1] {
            emails.push(format!("{}@b", "a".repeat(length - 2)));
            emails.push(format!("{}@b", "😀".repeat(length - 2)));
        }
        agrees(
            "email",
            &email(),
            |text: &str| Email::parse(text.to_owned()),
            &emails,
        );
    }

    #[test]
    fn every_text_schema_accepts_exactly_the_lengths_its_parser_does() {
        agrees(
            "display_name",
            &display_name(),
            |text: &str| DisplayName::parse(text.to_owned()),
            &around_lengths(1, DisplayName::MAX_CHARS),
        );
        agrees(
            "sku",
            &sku(),
            |text: &str| Sku::parse(text.to_owned()),
            &around_lengths(1, Sku::MAX_CHARS),
        );
        agrees(
            "name",
            &product_name(),
            |text: &str| ProductName::parse(text.to_owned()),
            &around_lengths(1, ProductName::MAX_CHARS),
        );
        agrees(
            "title",
            &title(),
            |text: &str| Title::parse(text.to_owned()),
            &around_lengths(1, Title::MAX_CHARS),
        );
        agrees(
            "body",
            &message_body(),
            |text: &str| MessageBody::parse(text.to_owned()),
            &around_lengths(1, MessageBody::MAX_CHARS),
        );
    }

    #[test]
    fn the_idempotency_key_schema_accepts_exactly_the_headers_the_handlers_do() {
        let parse = |text: &str| {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_bytes(text.as_bytes()).map_err(|_| {
                ServiceError::validation("idempotency_key", "not a header value at all")
            })?;
            headers.insert(crate::routes::IDEMPOTENCY_KEY, value);
            crate::routes::idempotency_key(&headers)
                .map_err(|_| ServiceError::validation("idempotency_key", "refused"))
        };
        // Spaces at either end never arrive: HTTP drops them before the handler sees the value.
        let mut keys = strings(&["", "a", "a b", "a\tb", "order-42", "café", "a\u{7f}b"]);
        for length in [IdempotencyKey::MAX_CHARS, IdempotencyKey::MAX_CHARS + 1] {
            keys.push("k".repeat(length));
            keys.push(format!("k{}k", " ".repeat(length - 2)));
        }
        agrees("Idempotency-Key", &idempotency_key(), parse, &keys);
    }

    #[test]
    fn the_lsn_schema_accepts_exactly_what_the_lsn_parser_does() {
        let parse = |text: &str| {
            text.parse::<Lsn>()
                .map_err(|_| ServiceError::validation("x-read-after-lsn", "refused"))
        };
        let lsns = strings(&[
            "0/0",
            "0/16B3748",
            "ffffffff/FFFFFFFF",
            "123456789/0",
            "0/123456789",
            "/1",
            "1/",
            "1",
            "g/1",
            "+1/2",
            "+/1",
            "-1/2",
            "1/2/3",
            "+1234567/+1234567",
            "+12345678/0",
            "0/16B3748 x",
        ]);
        agrees("x-read-after-lsn", &read_after_lsn(), parse, &lsns);
    }

    #[test]
    fn the_sort_and_order_enums_are_what_their_parsers_accept() {
        use service::domain::products::{ProductSort, SortOrder};
        let sorts: Vec<ProductSort> = PRODUCT_SORTS
            .iter()
            .map(|name| ProductSort::parse(name).unwrap())
            .collect();
        assert_eq!(
            sorts,
            [
                ProductSort::Name,
                ProductSort::Price,
                ProductSort::CreatedAt
            ]
        );
        let orders: Vec<SortOrder> = SORT_ORDERS
            .iter()
            .map(|name| SortOrder::parse(name).unwrap())
            .collect();
        assert_eq!(orders, [SortOrder::Asc, SortOrder::Desc]);
        let listed = |schema: Object| {
            schema
                .enum_values
                .unwrap_or_default()
                .into_iter()
                .map(|value| value.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(product_sort()), PRODUCT_SORTS);
        assert_eq!(listed(sort_order()), SORT_ORDERS);
    }

    /// `schema`'s bounds as integers.
    fn bounds(schema: &Object) -> (i64, i64) {
        let as_i64 = |number: Option<&utoipa::Number>| match number {
            Some(utoipa::Number::Int(n)) => *n as i64,
            _ => panic!("an integer bound is missing or not an integer"),
        };
        assert!(matches!(
            schema.schema_type,
            SchemaType::Type(Type::Integer)
        ));
        (
            as_i64(schema.minimum.as_ref()),
            as_i64(schema.maximum.as_ref()),
        )
    }

    /// Asserts that `parse` accepts both bounds of `schema` and refuses one past each.
    fn bounded_like(name: &str, schema: &Object, parse: impl Fn(i64) -> Result<(), ServiceError>) {
        let (min, max) = bounds(schema);
        for inside in [min, max] {
            assert!(
                parse(inside).is_ok(),
                "{name}: {inside} is allowed but refused"
            );
        }
        for outside in [min.checked_sub(1), max.checked_add(1)]
            .into_iter()
            .flatten()
        {
            assert!(
                parse(outside).is_err(),
                "{name}: {outside} is forbidden but accepted"
            );
        }
    }

    #[test]
    fn every_integer_schema_has_the_bounds_its_parser_enforces() {
        bounded_like("stock", &stock(), |n| Stock::new(n).map(drop));
        bounded_like("quantity", &quantity(), |n| Quantity::new(n).map(drop));
        bounded_like("messages limit", &message_limit(), |n| {
            MessageLimit::parse(Some(n)).map(drop)
        });
        let (min, max) = bounds(&product_limit());
        assert_eq!((min, max), (1, ProductQuery::MAX_LIMIT as i64));
        let (min, max) = bounds(&product_offset());
        assert_eq!((min, max as u64), (0, ProductQuery::MAX_OFFSET));
    }

    #[test]
    fn the_order_items_schema_has_the_bounds_of_order_lines() {
        let items = order_items();
        assert_eq!(items.min_items, Some(1));
        assert_eq!(items.max_items, Some(OrderLines::MAX_LINES));
        let line = |id| (id, Quantity::new(1).unwrap());
        assert!(OrderLines::new((0..50).map(line).collect()).is_ok());
        assert!(OrderLines::new((0..51).map(line).collect()).is_err());
        assert!(OrderLines::new(Vec::new()).is_err());
    }
}
