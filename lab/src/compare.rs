//! The ORM against hand-written SQL, query by query, three ways.
//!
//! Each canonical query is written three times:
//!
//! 1. **The first attempt** (`*_orm`): what SeaORM's entity API gives when the SQL is not
//!    thought about — whole models through `find_both_related`, one statement per entity. Where
//!    the application once had the query, this is the code it had: a user's conversations and
//!    then their newest messages, an order and then its items (`repo::orders::find_for_buyer`,
//!    `items_of_order`).
//! 2. **The ORM done right** (`*_tuned`): the query builder shaped like the raw SQL — only the
//!    columns the result holds (`select_only` + `into_model`), one statement where the raw SQL
//!    sends one, a correlated subquery as an expression. The application's hot paths are
//!    written this way: `repo::messages::page`, `repo::conversations::with_newest_message`,
//!    `repo::orders::find_with_items` and `list_with_items`.
//! 3. **Raw SQL** (`*_raw`): this module's own parameterized SQL, run through
//!    `Statement::from_sql_and_values`, written to return the same rows.
//!
//! Where the first attempt already sends what the raw SQL sends (the product search, the
//! spenders' `GROUP BY`, `place_order`'s guarded update, all the application's own code), the
//! tuned side is the same code, run again: the difference between the two is the noise.
//!
//! [`run_compare`] runs all three on the same data (the demo data set and a long conversation,
//! inside a transaction it rolls back), checks that they return the same rows, and reports the
//! SQL each sent, how many statements, the median time over several runs and, on PostgreSQL and
//! MySQL/MariaDB, the plan of every statement (`EXPLAIN`; MariaDB's in its JSON format). The
//! point is not that one wins: it is to see the SQL the ORM writes for you, and how to make it
//! write what you would.
//!
//! The raw SQL is written once with PostgreSQL's numbered placeholders (`$1`, …); [`raw`]
//! rewrites them to `?` for SQLite and MySQL, repeating a value where `$n` repeats. Values are
//! always bound, never formatted into the SQL.

use std::time::{Duration, Instant};

use entity::{
    conversation_participants as participants, conversations, messages, order_items, orders,
    products, users,
};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait,
    SelectModel, Selector, Statement, TransactionSession, TransactionTrait, Value,
    sea_query::{Expr, ExprTrait, Func, Query},
};
use serde::Serialize;
use service::{
    ServiceError,
    domain::{
        chat::MessageBody,
        products::{ProductSort, SortOrder},
    },
    repo::{self, conversations::ConversationSet},
};
use sql_observe::{self as observe, CapturedStatement, ObserveConfig, SafelistEntry, Scope};

use crate::seed::{self, BulkTarget, MessageSpec};

/// How many times each side runs; the median is reported.
pub const RUNS: usize = 7;

/// Builds a raw statement for `backend` from SQL written with `$n` placeholders: on SQLite and
/// MySQL each `$n` becomes `?` and its value is bound again at that position.
pub fn raw(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend == DbBackend::Postgres {
        return Statement::from_sql_and_values(backend, sql, values);
    }
    let mut rewritten = String::with_capacity(sql.len());
    let mut positional = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let is_placeholder = c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit());
        if !is_placeholder {
            rewritten.push(c);
            continue;
        }
        let mut number = 0usize;
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            number = number * 10 + d.to_digit(10).map_or(0, |d| d as usize);
            chars.next();
        }
        rewritten.push('?');
        if let Some(value) = number.checked_sub(1).and_then(|i| values.get(i)) {
            positional.push(value.clone());
        }
    }
    Statement::from_sql_and_values(backend, rewritten, positional)
}

// ---------------------------------------------------------------------------------------------
// The rows each case returns; both sides must produce equal vectors.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct MessageWithSender {
    pub id: i64,
    pub body: String,
    pub sender: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct ConversationWithLastMessage {
    pub conversation_id: i64,
    pub title: String,
    pub last_message_id: Option<i64>,
    pub last_message: Option<String>,
}

/// A product found, with what the application's search row holds but its creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct ProductHit {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub seller_id: i64,
    pub stock: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct OrderLine {
    pub order_id: i64,
    pub status: String,
    pub position: i32,
    pub product_id: i64,
    pub product_name: String,
    pub seller_id: i64,
    pub quantity: i32,
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Spender {
    pub user_id: i64,
    pub username: String,
    pub order_count: i64,
    pub total_spent: Decimal,
}

/// What the guarded stock update reports: rows affected when the stock suffices, and when not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardedUpdate {
    pub affected_when_in_stock: u64,
    pub affected_when_short: u64,
}

// ---------------------------------------------------------------------------------------------
// The cases, ORM side and raw side.

/// The inputs every case reads.
#[derive(Debug, Clone)]
pub struct CaseInputs {
    pub conversation_id: i64,
    pub user_id: i64,
    /// What product names must contain (ignoring case), as the search endpoint's `q`.
    pub search_text: String,
    pub order_id: i64,
    /// Who placed `order_id`: the application shows an order to its buyer only.
    pub order_buyer_id: i64,
    pub buyer_ids: Vec<i64>,
    pub product_in_stock: i64,
}

/// How many messages the first case reads.
const LAST_MESSAGES: u64 = 10;
/// How many products the search returns.
const SEARCH_LIMIT: u64 = 5;

/// The first attempt: entities in, entities out. `find_both_related` selects every column of
/// both tables and builds two whole models per row, to keep three fields.
pub async fn last_messages_orm<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<MessageWithSender>, DbErr> {
    let rows = messages::Entity::find()
        .filter(messages::Column::ConversationId.eq(input.conversation_id))
        .order_by_desc(messages::Column::Id)
        .limit(LAST_MESSAGES)
        .find_both_related(users::Entity)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(message, sender)| MessageWithSender {
            id: message.id,
            body: message.body,
            sender: sender.username,
        })
        .collect())
}

/// Done right: only the three columns the result holds, decoded straight into it.
pub async fn last_messages_tuned<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<MessageWithSender>, DbErr> {
    last_messages_tuned_select(input).all(db).await
}

/// [`last_messages_tuned`]'s query, built but not run: the benchmark prices the building alone.
pub fn last_messages_tuned_select(input: &CaseInputs) -> Selector<SelectModel<MessageWithSender>> {
    messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .column(messages::Column::Body)
        .column_as(users::Column::Username, "sender")
        .inner_join(users::Entity)
        .filter(messages::Column::ConversationId.eq(input.conversation_id))
        .order_by_desc(messages::Column::Id)
        .limit(LAST_MESSAGES)
        .into_model::<MessageWithSender>()
}

pub const LAST_MESSAGES_SQL: &str = "SELECT m.id, m.body, u.username AS sender \
     FROM messages m JOIN users u ON u.id = m.sender_id \
     WHERE m.conversation_id = $1 ORDER BY m.id DESC LIMIT $2";

pub async fn last_messages_raw<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<MessageWithSender>, DbErr> {
    let stmt = raw(
        db.get_database_backend(),
        LAST_MESSAGES_SQL,
        vec![input.conversation_id.into(), (LAST_MESSAGES as i64).into()],
    );
    MessageWithSender::find_by_statement(stmt).all(db).await
}

/// The first attempt, as the application once ran it: the user's conversations as whole
/// models, then the newest message of each (found by a correlated `MAX(id)` per conversation)
/// with its whole sender: two statements, every column of three tables.
pub async fn conversations_with_last_message_orm<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<ConversationWithLastMessage>, DbErr> {
    let set = ConversationSet::OfParticipant(input.user_id);
    let mut theirs = conversations::Entity::find()
        .filter(set.contains(conversations::Column::Id))
        .all(db)
        .await?;
    // The query promises no order; the raw side's is by id.
    theirs.sort_by_key(|conversation| conversation.id);
    let newest_id = repo::conversations::newest_message_id();
    let newest_ids = Query::select()
        .expr(newest_id)
        .from(conversations::Entity)
        .and_where(set.contains(conversations::Column::Id))
        .to_owned();
    let newest = messages::Entity::find()
        .filter(messages::Column::Id.in_subquery(newest_ids))
        .find_both_related(users::Entity)
        .all(db)
        .await?;
    Ok(theirs
        .into_iter()
        .map(|conversation| {
            let message = newest
                .iter()
                .map(|(message, _)| message)
                .find(|m| m.conversation_id == conversation.id);
            ConversationWithLastMessage {
                conversation_id: conversation.id,
                title: conversation.title,
                last_message_id: message.map(|m| m.id),
                last_message: message.map(|m| m.body.clone()),
            }
        })
        .collect())
}

/// Done right: one statement, as the raw SQL is. The newest message is joined on
/// `id = (SELECT MAX(id) …)`, a correlated subquery the query builder writes as a
/// `SelectStatement` used as an expression; the join needs that custom `ON`, so it goes on the
/// underlying `SelectStatement` (`QueryTrait::query`) rather than through a relation.
pub async fn conversations_with_last_message_tuned<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<ConversationWithLastMessage>, DbErr> {
    let newest_id = repo::conversations::newest_message_id();
    let mut query = conversations::Entity::find()
        .select_only()
        .column_as(conversations::Column::Id, "conversation_id")
        .column(conversations::Column::Title)
        .column_as(messages::Column::Id, "last_message_id")
        .column_as(messages::Column::Body, "last_message")
        .join(
            JoinType::InnerJoin,
            participants::Relation::Conversations.def().rev(),
        )
        .filter(participants::Column::UserId.eq(input.user_id))
        .order_by_asc(conversations::Column::Id);
    QueryTrait::query(&mut query).join(
        JoinType::LeftJoin,
        messages::Entity,
        Expr::col((messages::Entity, messages::Column::Id)).eq(newest_id),
    );
    query
        .into_model::<ConversationWithLastMessage>()
        .all(db)
        .await
}

pub const CONVERSATIONS_WITH_LAST_MESSAGE_SQL: &str = "SELECT c.id AS conversation_id, c.title, \
     m.id AS last_message_id, m.body AS last_message \
     FROM conversations c \
     JOIN conversation_participants p ON p.conversation_id = c.id AND p.user_id = $1 \
     LEFT JOIN messages m ON m.id = \
       (SELECT MAX(m2.id) FROM messages m2 WHERE m2.conversation_id = c.id) \
     ORDER BY c.id";

pub async fn conversations_with_last_message_raw<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<ConversationWithLastMessage>, DbErr> {
    let stmt = raw(
        db.get_database_backend(),
        CONVERSATIONS_WITH_LAST_MESSAGE_SQL,
        vec![input.user_id.into()],
    );
    ConversationWithLastMessage::find_by_statement(stmt)
        .all(db)
        .await
}

/// The application's search, `repo::products::search`, as `GET /products?q=…&sort=price&order=desc`
/// sends it: a case-insensitive substring of the name, products with a stock row only, the
/// most expensive first.
pub async fn product_search_orm<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<ProductHit>, DbErr> {
    let search = repo::products::Search {
        name_contains: Some(&input.search_text),
        sort: ProductSort::Price,
        order: SortOrder::Desc,
        limit: SEARCH_LIMIT,
        offset: 0,
    };
    let rows = repo::products::search(db, &search).await?;
    Ok(rows
        .into_iter()
        .map(|row| ProductHit {
            id: row.id,
            sku: row.sku,
            name: row.name,
            price: row.price,
            seller_id: row.seller_id,
            stock: row.stock,
        })
        .collect())
}

/// `%`, `_` and `\` match themselves (`ESCAPE '\'`), as in the application's search.
pub const PRODUCT_SEARCH_SQL: &str = "SELECT p.id, p.sku, p.name, p.price, p.seller_id, \
     i.quantity AS stock \
     FROM products p JOIN inventory i ON i.product_id = p.id \
     WHERE LOWER(p.name) LIKE LOWER($1) ESCAPE '\\' \
     ORDER BY p.price DESC, p.id DESC LIMIT $2 OFFSET $3";

/// The `LIKE` pattern for names containing `text`: its wildcards and the escape character
/// escaped, `%` on both sides.
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// [`PRODUCT_SEARCH_SQL`] as `backend` reads it. MySQL and MariaDB take a backslash in a string
/// literal as an escape (unless `NO_BACKSLASH_ESCAPES` is set), so there the one backslash of
/// `ESCAPE '\'` is spelled `'\\'`.
pub fn product_search_sql(backend: DbBackend) -> String {
    match backend {
        DbBackend::MySql => PRODUCT_SEARCH_SQL.replace(r"ESCAPE '\'", r"ESCAPE '\\'"),
        _ => PRODUCT_SEARCH_SQL.to_owned(),
    }
}

pub async fn product_search_raw<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<ProductHit>, DbErr> {
    let backend = db.get_database_backend();
    let stmt = raw(
        backend,
        &product_search_sql(backend),
        vec![
            contains_pattern(&input.search_text).into(),
            (SEARCH_LIMIT as i64).into(),
            0i64.into(),
        ],
    );
    ProductHit::find_by_statement(stmt).all(db).await
}

/// The first attempt, as the application once ran it: the order, if this buyer placed it, as a
/// whole model, then its items with their products' names and sellers: two statements.
pub async fn order_lines_orm<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<OrderLine>, DbErr> {
    let Some(order) =
        repo::orders::find_for_buyer(db, input.order_buyer_id, input.order_id).await?
    else {
        return Ok(Vec::new());
    };
    let items = repo::orders::items_of_order(db, order.id).await?;
    Ok(items
        .into_iter()
        .map(|item| OrderLine {
            order_id: order.id,
            status: order.status.clone(),
            position: item.position,
            product_id: item.product_id,
            product_name: item.name,
            seller_id: item.seller_id,
            quantity: item.quantity,
            unit_price: item.unit_price,
        })
        .collect())
}

/// Done right: the order and its lines in one statement, its buyer checked in the same
/// `WHERE`, as the raw SQL does.
pub async fn order_lines_tuned<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<OrderLine>, DbErr> {
    order_lines_tuned_select(input).all(db).await
}

/// [`order_lines_tuned`]'s query, built but not run: the benchmark prices the building alone.
pub fn order_lines_tuned_select(input: &CaseInputs) -> Selector<SelectModel<OrderLine>> {
    orders::Entity::find()
        .select_only()
        .column_as(orders::Column::Id, "order_id")
        .column(orders::Column::Status)
        .column(order_items::Column::Position)
        .column(order_items::Column::ProductId)
        .column_as(products::Column::Name, "product_name")
        .column(products::Column::SellerId)
        .column(order_items::Column::Quantity)
        .column(order_items::Column::UnitPrice)
        .join(
            JoinType::InnerJoin,
            order_items::Relation::Orders.def().rev(),
        )
        .join(JoinType::InnerJoin, order_items::Relation::Products.def())
        .filter(orders::Column::Id.eq(input.order_id))
        .filter(orders::Column::BuyerId.eq(input.order_buyer_id))
        .order_by_asc(order_items::Column::Position)
        .into_model::<OrderLine>()
}

pub const ORDER_LINES_SQL: &str = "SELECT o.id AS order_id, o.status, i.position, i.product_id, \
     p.name AS product_name, p.seller_id, i.quantity, i.unit_price \
     FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id \
     WHERE o.id = $1 AND o.buyer_id = $2 ORDER BY i.position";

pub async fn order_lines_raw<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<OrderLine>, DbErr> {
    let stmt = raw(
        db.get_database_backend(),
        ORDER_LINES_SQL,
        vec![input.order_id.into(), input.order_buyer_id.into()],
    );
    OrderLine::find_by_statement(stmt).all(db).await
}

/// The application has no such report, so this query is the comparison's own.
pub async fn spenders_orm<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<Spender>, DbErr> {
    orders::Entity::find()
        .select_only()
        .column_as(orders::Column::BuyerId, "user_id")
        .column_as(users::Column::Username, "username")
        .column_as(
            Expr::expr(Func::count(Expr::col((orders::Entity, orders::Column::Id)))),
            "order_count",
        )
        .column_as(
            Expr::expr(Func::sum(Expr::col((
                orders::Entity,
                orders::Column::Total,
            )))),
            "total_spent",
        )
        .inner_join(users::Entity)
        .filter(orders::Column::Status.eq("paid"))
        .filter(orders::Column::BuyerId.is_in(input.buyer_ids.iter().copied()))
        .group_by(orders::Column::BuyerId)
        .group_by(users::Column::Username)
        .having(Func::count(Expr::col((orders::Entity, orders::Column::Id))).gte(2))
        .order_by_asc(orders::Column::BuyerId)
        .into_model::<Spender>()
        .all(db)
        .await
}

/// The `IN` list has one placeholder per buyer; it is built from their count, never from
/// their values.
pub fn spenders_sql(buyers: usize) -> String {
    let placeholders: Vec<String> = (0..buyers).map(|i| format!("${}", i + 3)).collect();
    format!(
        "SELECT o.buyer_id AS user_id, u.username, COUNT(o.id) AS order_count, \
         SUM(o.total) AS total_spent \
         FROM orders o JOIN users u ON u.id = o.buyer_id \
         WHERE o.status = $1 AND o.buyer_id IN ({}) \
         GROUP BY o.buyer_id, u.username HAVING COUNT(o.id) >= $2 ORDER BY o.buyer_id",
        placeholders.join(", ")
    )
}

pub async fn spenders_raw<C: ConnectionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<Vec<Spender>, DbErr> {
    let mut values: Vec<Value> = vec!["paid".into(), 2i64.into()];
    values.extend(input.buyer_ids.iter().map(|id| Value::from(*id)));
    let stmt = raw(
        db.get_database_backend(),
        &spenders_sql(input.buyer_ids.len()),
        values,
    );
    Spender::find_by_statement(stmt).all(db).await
}

/// The ORM side is the repository function `place_order` itself calls, so the comparison is of
/// the statement Mercado really sends.
async fn guarded_update_orm_once<C: ConnectionTrait>(
    db: &C,
    product_id: i64,
    quantity: i32,
) -> Result<u64, DbErr> {
    let taken = service::repo::products::take_stock(db, product_id, quantity).await?;
    Ok(u64::from(taken))
}

/// place_order's stock check and decrement in one atomic statement: it changes a row only when
/// the stock suffices, and rows affected says which happened.
pub async fn guarded_update_orm<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<GuardedUpdate, DbErr> {
    // A savepoint, rolled back, so every run starts from the same stock.
    let savepoint = db.begin().await?;
    let affected_when_in_stock =
        guarded_update_orm_once(&savepoint, input.product_in_stock, 3).await?;
    let affected_when_short =
        guarded_update_orm_once(&savepoint, input.product_in_stock, 1_000_000).await?;
    savepoint.rollback().await?;
    Ok(GuardedUpdate {
        affected_when_in_stock,
        affected_when_short,
    })
}

pub const GUARDED_UPDATE_SQL: &str = "UPDATE inventory SET quantity = quantity - $1 \
     WHERE product_id = $2 AND quantity >= $1";

pub async fn guarded_update_raw<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    input: &CaseInputs,
) -> Result<GuardedUpdate, DbErr> {
    let backend = db.get_database_backend();
    let savepoint = db.begin().await?;
    let mut affected = Vec::new();
    for quantity in [3i32, 1_000_000] {
        let stmt = raw(
            backend,
            GUARDED_UPDATE_SQL,
            vec![quantity.into(), input.product_in_stock.into()],
        );
        affected.push(savepoint.execute_raw(stmt).await?.rows_affected());
    }
    savepoint.rollback().await?;
    Ok(GuardedUpdate {
        affected_when_in_stock: affected.first().copied().unwrap_or_default(),
        affected_when_short: affected.get(1).copied().unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Running them.

/// One side of a case.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// The statements it sent, with placeholders, as the backend received them.
    pub sql: Vec<String>,
    pub statement_count: usize,
    /// The median wall time over [`RUNS`] runs, in microseconds.
    pub median_us: u64,
    /// PostgreSQL, MySQL and MariaDB: `EXPLAIN` of each statement (`FORMAT=JSON` on the latter
    /// two), one plan line per entry; `None` on SQLite.
    pub explain: Option<Vec<Vec<String>>>,
}

/// One canonical query, three ways.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub name: &'static str,
    /// The SeaORM calls of the first attempt.
    pub orm_api: &'static str,
    /// The first attempt: what SeaORM's entity API gives without thinking about the SQL.
    pub orm: SideReport,
    /// The SeaORM calls done right.
    pub tuned_api: &'static str,
    /// The ORM done right: the query builder shaped like the raw SQL.
    pub tuned: SideReport,
    pub raw: SideReport,
    /// Whether all three returned the same rows (they must).
    pub identical: bool,
    /// First-attempt median time divided by raw median time.
    pub ratio: f64,
    /// Tuned median time divided by raw median time.
    pub tuned_ratio: f64,
    pub result: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub backend: String,
    pub runs: usize,
    pub cases: Vec<CaseReport>,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples
        .get(samples.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO)
}

async fn explain<C: ConnectionTrait>(
    db: &C,
    statements: &[CapturedStatement],
) -> Result<Option<Vec<Vec<String>>>, DbErr> {
    let backend = db.get_database_backend();
    // PostgreSQL answers one row per plan line, in a column `QUERY PLAN`; MySQL and MariaDB
    // answer `FORMAT=JSON` as one row with the whole plan in a column `EXPLAIN`, shown here one
    // line of it per entry. SQLite's `EXPLAIN` is its bytecode, not a plan: none.
    let (prefix, column) = match backend {
        DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        DbBackend::MySql => ("EXPLAIN FORMAT=JSON", "EXPLAIN"),
        _ => return Ok(None),
    };
    let mut plans = Vec::new();
    for statement in statements {
        let stmt = Statement::from_sql_and_values(
            backend,
            format!("{prefix} {}", statement.sql),
            statement.values.clone(),
        );
        let rows = observe::unobserved(db.query_all_raw(stmt)).await?;
        let mut lines = Vec::new();
        for row in &rows {
            let text = row.try_get::<String>("", column)?;
            lines.extend(text.lines().map(str::to_owned));
        }
        plans.push(lines);
    }
    Ok(Some(plans))
}

async fn side<C, T, F, Fut>(db: &C, run: F) -> Result<(T, SideReport), DbErr>
where
    C: ConnectionTrait,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    let (first, report) = observe::scope(Scope::command("compare"), run()).await;
    let first = first?;
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        observe::unobserved(run()).await?;
        samples.push(started.elapsed());
    }
    let explain = explain(db, &report.statements).await?;
    Ok((
        first,
        SideReport {
            sql: report.statements.iter().map(|s| s.sql.clone()).collect(),
            statement_count: report.statement_count(),
            median_us: micros(median(samples)),
            explain,
        },
    ))
}

/// A case's three sides: how each is called, and what its SeaORM calls are.
struct Sides<FO, FT, FR> {
    orm_api: &'static str,
    orm: FO,
    tuned_api: &'static str,
    tuned: FT,
    raw: FR,
}

fn over(numerator: &SideReport, denominator: &SideReport) -> f64 {
    if denominator.median_us == 0 {
        0.0
    } else {
        numerator.median_us as f64 / denominator.median_us as f64
    }
}

async fn case<C, T, FO, FutO, FT, FutT, FR, FutR>(
    db: &C,
    name: &'static str,
    sides: Sides<FO, FT, FR>,
) -> Result<CaseReport, DbErr>
where
    C: ConnectionTrait,
    T: PartialEq + Serialize,
    FO: Fn() -> FutO,
    FutO: Future<Output = Result<T, DbErr>>,
    FT: Fn() -> FutT,
    FutT: Future<Output = Result<T, DbErr>>,
    FR: Fn() -> FutR,
    FutR: Future<Output = Result<T, DbErr>>,
{
    let (orm_result, orm) = side(db, sides.orm).await?;
    let (tuned_result, tuned) = side(db, sides.tuned).await?;
    let (raw_result, raw) = side(db, sides.raw).await?;
    Ok(CaseReport {
        name,
        orm_api: sides.orm_api,
        tuned_api: sides.tuned_api,
        identical: orm_result == raw_result && tuned_result == raw_result,
        ratio: over(&orm, &raw),
        tuned_ratio: over(&tuned, &raw),
        result: serde_json::to_value(&orm_result).unwrap_or_default(),
        orm,
        tuned,
        raw,
    })
}

/// Seeds the data the cases read: the demo data set of 10, plus 15 messages in its first
/// conversation so that "the last 10" leaves some out.
pub async fn seed_compare_data<C: BulkTarget>(db: &C) -> Result<CaseInputs, ServiceError> {
    let mut set = seed::recipes::demo(10)?;
    let long = 0;
    let members = set.conversations[long].participants();
    for i in 0..15 {
        set.messages.push(MessageSpec {
            conversation: long,
            sender: members[i % members.len()],
            reply_to: None,
            body: MessageBody::parse(format!("Message {i} of a long conversation"))?,
        });
    }
    let ids = seed::bulk::write(db, &set, |_| {}).await?.ids;
    let last_order = set.orders.len().checked_sub(1);
    // Every demo product's name starts with this word; the search finds the half that have
    // stock (it joins inventory), five of ten, the most expensive first.
    let search_text = set.products[0]
        .name
        .as_str()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok(CaseInputs {
        conversation_id: ids.conversations[long],
        user_id: ids.users[1],
        search_text,
        order_id: last_order.map_or(0, |o| ids.orders[o]),
        order_buyer_id: last_order.map_or(0, |o| ids.users[set.orders[o].buyer]),
        buyer_ids: ids.users.clone(),
        product_in_stock: ids.products[0],
    })
}

/// Runs every case on `inputs` through `db` (a transaction, typically).
pub async fn run_cases<C>(db: &C, inputs: &CaseInputs) -> Result<Vec<CaseReport>, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    // Where the first attempt already sends what the raw SQL sends, the tuned side is the same
    // code, measured again: the spread between the two is the noise.
    const ALREADY_RIGHT: &str =
        "the same code: the first attempt already sends what the raw SQL sends";
    Ok(vec![
        case(
            db,
            "the last 10 messages of a conversation, with senders",
            Sides {
                orm_api: "find().filter(..).order_by_desc(id).limit(n).find_both_related(users)",
                orm: || last_messages_orm(db, inputs),
                tuned_api: "select_only().column(..).column_as(users::Username, ..).inner_join(users)..into_model::<MessageWithSender>()",
                tuned: || last_messages_tuned(db, inputs),
                raw: || last_messages_raw(db, inputs),
            },
        )
        .await?,
        case(
            db,
            "a user's conversations with their last message",
            Sides {
                orm_api: "find().filter(id in participant subquery), then messages::find().filter(id.in_subquery(correlated MAX)).find_both_related(users)",
                orm: || conversations_with_last_message_orm(db, inputs),
                tuned_api: "select_only().join(participants).filter(..), plus LEFT JOIN messages ON id = (correlated MAX SelectStatement) via QueryTrait::query(), into_model()",
                tuned: || conversations_with_last_message_tuned(db, inputs),
                raw: || conversations_with_last_message_raw(db, inputs),
            },
        )
        .await?,
        case(
            db,
            "product search with sort and limit",
            Sides {
                orm_api: "repo::products::search: select_only().inner_join(inventory).filter(LOWER(name) LIKE ..).order_by(price).limit(5).offset(0)",
                orm: || product_search_orm(db, inputs),
                tuned_api: ALREADY_RIGHT,
                tuned: || product_search_orm(db, inputs),
                raw: || product_search_raw(db, inputs),
            },
        )
        .await?,
        case(
            db,
            "an order with its items and product names",
            Sides {
                orm_api: "repo::orders::find_for_buyer, then repo::orders::items_of_order: select_only().inner_join(products)",
                orm: || order_lines_orm(db, inputs),
                tuned_api: "orders::find().select_only().join(order_items).join(products).filter(id, buyer_id).into_model::<OrderLine>()",
                tuned: || order_lines_tuned(db, inputs),
                raw: || order_lines_raw(db, inputs),
            },
        )
        .await?,
        case(
            db,
            "users with their order count and total spent (GROUP BY … HAVING)",
            Sides {
                orm_api: "select_only().column_as(Func::count ..).group_by(..).having(..).into_model()",
                orm: || spenders_orm(db, inputs),
                tuned_api: ALREADY_RIGHT,
                tuned: || spenders_orm(db, inputs),
                raw: || spenders_raw(db, inputs),
            },
        )
        .await?,
        case(
            db,
            "place_order's guarded stock update, checked by rows affected",
            Sides {
                orm_api: "repo::products::take_stock: update_many().col_expr(quantity, quantity - n).filter(quantity.gte(n)).exec()",
                orm: || guarded_update_orm(db, inputs),
                tuned_api: ALREADY_RIGHT,
                tuned: || guarded_update_orm(db, inputs),
                raw: || guarded_update_raw(db, inputs),
            },
        )
        .await?,
    ])
}

/// Why the guarded update runs twice on each side: not a loop to fix.
pub const GUARDED_UPDATE_TWICE: &str = "the comparison runs the guarded update twice on \
     purpose, once with enough stock and once without, to show rows affected both ways";

/// The fingerprint of the ORM side's guarded update (`repo::products::take_stock`), as the
/// capture normalises it.
const ORM_GUARD_FINGERPRINT: &str = "UPDATE \"inventory\" SET \"quantity\" = \"quantity\" - ? \
     WHERE \"inventory\".\"product_id\" = ? AND \"inventory\".\"quantity\" >= ?";

/// `config` with the comparison's deliberate repeats safelisted ahead of its own entries, so
/// that the comparison's reason is the one given: the guarded update, twice on each side.
pub fn with_deliberate_repeats(mut config: ObserveConfig) -> ObserveConfig {
    // The capture's fingerprint of a hand-written statement is its SQL with `?` placeholders.
    let raw_guard = raw(DbBackend::Sqlite, GUARDED_UPDATE_SQL, Vec::new()).sql;
    let mut safelist: Vec<SafelistEntry> = [raw_guard.as_str(), ORM_GUARD_FINGERPRINT]
        .map(|fingerprint| SafelistEntry::new(fingerprint, GUARDED_UPDATE_TWICE))
        .into();
    safelist.append(&mut config.safelist);
    config.safelist = safelist;
    config
}

/// Seeds the data and runs every case inside one transaction that is rolled back. The
/// statements are captured under `config` (the application's) with the comparison's
/// deliberate repeats safelisted ([`with_deliberate_repeats`]), installed on a clone of `db`
/// of its own; `db` itself is left as it was.
pub async fn run_compare(
    db: &DatabaseConnection,
    config: ObserveConfig,
) -> Result<CompareReport, ServiceError> {
    let mut db = db.clone();
    observe::install(&mut db, with_deliberate_repeats(config));
    let txn = db.begin().await?;
    let inputs = observe::unobserved(seed_compare_data(&txn)).await?;
    let cases = run_cases(&txn, &inputs).await?;
    txn.rollback().await?;
    Ok(CompareReport {
        backend: format!("{:?}", db.get_database_backend()),
        runs: RUNS,
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_become_positional_with_repeated_values() {
        let stmt = raw(
            DbBackend::Sqlite,
            GUARDED_UPDATE_SQL,
            vec![3i32.into(), 7i64.into()],
        );
        assert_eq!(
            stmt.sql,
            "UPDATE inventory SET quantity = quantity - ? WHERE product_id = ? AND quantity >= ?"
        );
        assert_eq!(
            stmt.values.map(|v| v.0),
            Some(vec![3i32.into(), 7i64.into(), 3i32.into()])
        );
    }

    #[test]
    fn postgres_keeps_its_numbered_placeholders() {
        let stmt = raw(DbBackend::Postgres, "SELECT $1", vec![1i64.into()]);
        assert_eq!(stmt.sql, "SELECT $1");
    }
}
