//! Loading related rows three ways, side by side, for the same five questions.
//!
//! - **Lazy**: one query for the parents, then one per parent (`find_related` in a loop).
//!   SeaORM never loads a relation behind your back, so "lazy" means this explicit loop — the
//!   N+1 pattern, and what the detector flags.
//! - **Joined**: one query with LEFT JOINs (`find_with_related`, `find_also_related`,
//!   `and_also_related`), rows consolidated in memory. One round trip; but the parent's columns
//!   repeat on every child row, and a LIMIT counts joined rows, so parents cannot be paginated.
//! - **Select-in**: one query per level, `WHERE key IN (…)` (`LoaderTrait::load_many` /
//!   `load_one` / `load_self`, or the 2.0 entity loader `Entity::load().with(..)`). No repeated
//!   columns and parents paginate normally; it costs one round trip per level.
//!
//! Every function here answers with plain types sorted by id, so the three strategies can be
//! compared with `==`. They read only the rows whose ids they are given, with queries of their
//! own (the strategies are the lesson; the application's reads are in `service::repo`).
//! [`run_demo`] writes the demo data set ([`crate::seed::demo`]) and runs every question every
//! way inside one transaction that it rolls back.

use std::time::Instant;

use entity::{conversations, inventory, messages, orders, products, users};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, LinkDef, Linked,
    LoaderTrait, ModelTrait, QueryFilter, QueryOrder, RelationTrait, TransactionTrait,
};
use serde::Serialize;
use service::ServiceError;
use sql_observe::{self as observe, CapturedStatement, Finding, Scope};

use crate::seed::{self, SeededIds};

/// How related rows are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Lazy,
    Joined,
    SelectIn,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Lazy, Strategy::Joined, Strategy::SelectIn];

    pub fn label(self) -> &'static str {
        match self {
            Strategy::Lazy => "lazy (a query per row)",
            Strategy::Joined => "joined eager loading",
            Strategy::SelectIn => "select-in eager loading",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The answers.

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageLine {
    pub id: i64,
    pub body: String,
    pub sender: String,
}

/// A conversation with its messages and each message's sender (1-N, then N-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationThread {
    pub id: i64,
    pub title: String,
    pub messages: Vec<MessageLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationRef {
    pub id: i64,
    pub title: String,
}

/// A user with the conversations they take part in (M-N through conversation_participants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserConversations {
    pub user_id: i64,
    pub username: String,
    pub conversations: Vec<ConversationRef>,
}

/// A product with its stock (1-1; `None` when it has no inventory row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductStock {
    pub product_id: i64,
    pub name: String,
    pub quantity: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRef {
    pub id: i64,
    pub body: String,
}

/// A message with the message it replies to (self-referential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageWithReply {
    pub id: i64,
    pub body: String,
    pub reply_to: Option<MessageRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderWithItems {
    pub order_id: i64,
    /// The products on the order's lines (through order_items).
    pub items: Vec<ProductRef>,
}

/// A user with their orders and each order's items (nested: 1-N, then M-N).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserOrders {
    pub user_id: i64,
    pub username: String,
    pub orders: Vec<OrderWithItems>,
}

fn message_line(message: &messages::Model, sender: Option<&users::Model>) -> MessageLine {
    MessageLine {
        id: message.id,
        body: message.body.clone(),
        sender: sender.map(|u| u.username.clone()).unwrap_or_default(),
    }
}

fn conversation_ref(conversation: &conversations::Model) -> ConversationRef {
    ConversationRef {
        id: conversation.id,
        title: conversation.title.clone(),
    }
}

fn product_ref(product: &products::Model) -> ProductRef {
    ProductRef {
        id: product.id,
        name: product.name.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Conversations with their messages and senders.

pub async fn threads_lazy<C: ConnectionTrait>(
    db: &C,
    conversation_ids: &[i64],
) -> Result<Vec<ConversationThread>, DbErr> {
    let found = conversations::Entity::find()
        .filter(conversations::Column::Id.is_in(conversation_ids.iter().copied()))
        .order_by_asc(conversations::Column::Id)
        .all(db)
        .await?;
    let mut threads = Vec::new();
    for conversation in found {
        let conversation_messages = conversation
            .find_related(messages::Entity)
            .order_by_asc(messages::Column::Id)
            .all(db)
            .await?;
        let mut lines = Vec::new();
        for message in &conversation_messages {
            let sender = message.find_related(users::Entity).one(db).await?;
            lines.push(message_line(message, sender.as_ref()));
        }
        threads.push(ConversationThread {
            id: conversation.id,
            title: conversation.title,
            messages: lines,
        });
    }
    Ok(threads)
}

pub async fn threads_joined<C: ConnectionTrait>(
    db: &C,
    conversation_ids: &[i64],
) -> Result<Vec<ConversationThread>, DbErr> {
    let rows = conversations::Entity::find()
        .filter(conversations::Column::Id.is_in(conversation_ids.iter().copied()))
        .find_also_related(messages::Entity)
        .and_also_related(users::Entity)
        .order_by_asc(conversations::Column::Id)
        .order_by_asc(messages::Column::Id)
        .all(db)
        .await?;
    let mut threads: Vec<ConversationThread> = Vec::new();
    for (conversation, message, sender) in rows {
        if threads.last().is_none_or(|t| t.id != conversation.id) {
            threads.push(ConversationThread {
                id: conversation.id,
                title: conversation.title.clone(),
                messages: Vec::new(),
            });
        }
        if let (Some(thread), Some(message)) = (threads.last_mut(), message) {
            thread
                .messages
                .push(message_line(&message, sender.as_ref()));
        }
    }
    Ok(threads)
}

pub async fn threads_select_in<C: ConnectionTrait>(
    db: &C,
    conversation_ids: &[i64],
) -> Result<Vec<ConversationThread>, DbErr> {
    // The 2.0 entity loader: one query per level (conversations, their messages, the senders).
    let loaded = conversations::Entity::load()
        .filter(conversations::Column::Id.is_in(conversation_ids.iter().copied()))
        .order_by_asc(conversations::Column::Id)
        .with((messages::Entity, users::Entity))
        .all(db)
        .await?;
    Ok(loaded
        .into_iter()
        .map(|conversation| {
            let mut lines: Vec<MessageLine> = conversation
                .messages
                .iter()
                .map(|message| MessageLine {
                    id: message.id,
                    body: message.body.clone(),
                    sender: message
                        .users
                        .as_ref()
                        .map(|u| u.username.clone())
                        .unwrap_or_default(),
                })
                .collect();
            lines.sort_by_key(|line| line.id);
            ConversationThread {
                id: conversation.id,
                title: conversation.title,
                messages: lines,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// 2. Users with their conversations (M-N).

async fn users_by_id<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Id.is_in(user_ids.iter().copied()))
        .order_by_asc(users::Column::Id)
        .all(db)
        .await
}

pub async fn user_conversations_lazy<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserConversations>, DbErr> {
    let mut answer = Vec::new();
    for user in users_by_id(db, user_ids).await? {
        let theirs = user
            .find_related(conversations::Entity)
            .order_by_asc(conversations::Column::Id)
            .all(db)
            .await?;
        answer.push(UserConversations {
            user_id: user.id,
            username: user.username,
            conversations: theirs.iter().map(conversation_ref).collect(),
        });
    }
    Ok(answer)
}

pub async fn user_conversations_joined<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserConversations>, DbErr> {
    let rows = users::Entity::find()
        .filter(users::Column::Id.is_in(user_ids.iter().copied()))
        .find_with_related(conversations::Entity)
        .order_by_asc(users::Column::Id)
        .order_by_asc(conversations::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user, theirs)| UserConversations {
            user_id: user.id,
            username: user.username,
            conversations: theirs.iter().map(conversation_ref).collect(),
        })
        .collect())
}

pub async fn user_conversations_select_in<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserConversations>, DbErr> {
    let found = users_by_id(db, user_ids).await?;
    // One query through the junction table for all users (2.0's load_many handles M-N).
    let theirs = found
        .load_many(
            conversations::Entity::find().order_by_asc(conversations::Column::Id),
            db,
        )
        .await?;
    Ok(found
        .into_iter()
        .zip(theirs)
        .map(|(user, theirs)| UserConversations {
            user_id: user.id,
            username: user.username,
            conversations: theirs.iter().map(conversation_ref).collect(),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// 3. Products with their inventory (1-1).

async fn products_by_id<C: ConnectionTrait>(
    db: &C,
    product_ids: &[i64],
) -> Result<Vec<products::Model>, DbErr> {
    products::Entity::find()
        .filter(products::Column::Id.is_in(product_ids.iter().copied()))
        .order_by_asc(products::Column::Id)
        .all(db)
        .await
}

pub async fn product_stock_lazy<C: ConnectionTrait>(
    db: &C,
    product_ids: &[i64],
) -> Result<Vec<ProductStock>, DbErr> {
    let mut answer = Vec::new();
    for product in products_by_id(db, product_ids).await? {
        let stock = product.find_related(inventory::Entity).one(db).await?;
        answer.push(ProductStock {
            product_id: product.id,
            name: product.name,
            quantity: stock.map(|s| s.quantity),
        });
    }
    Ok(answer)
}

pub async fn product_stock_joined<C: ConnectionTrait>(
    db: &C,
    product_ids: &[i64],
) -> Result<Vec<ProductStock>, DbErr> {
    let rows = products::Entity::find()
        .filter(products::Column::Id.is_in(product_ids.iter().copied()))
        .find_also_related(inventory::Entity)
        .order_by_asc(products::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(product, stock)| ProductStock {
            product_id: product.id,
            name: product.name,
            quantity: stock.map(|s| s.quantity),
        })
        .collect())
}

pub async fn product_stock_select_in<C: ConnectionTrait>(
    db: &C,
    product_ids: &[i64],
) -> Result<Vec<ProductStock>, DbErr> {
    let found = products_by_id(db, product_ids).await?;
    let stock = found.load_one(inventory::Entity, db).await?;
    Ok(found
        .into_iter()
        .zip(stock)
        .map(|(product, stock)| ProductStock {
            product_id: product.id,
            name: product.name,
            quantity: stock.map(|s| s.quantity),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// 4. Messages with the message each replies to (self-referential).

/// messages.reply_to_id → messages.id, as a link: SeaORM cannot name a relation from an entity
/// to itself with `Related`, so self-joins go through `Linked`.
#[derive(Debug, Clone, Copy)]
pub struct RepliesTo;

impl Linked for RepliesTo {
    type FromEntity = messages::Entity;
    type ToEntity = messages::Entity;

    fn link(&self) -> Vec<LinkDef> {
        vec![messages::Relation::SelfRef.def()]
    }
}

fn message_ref(message: &messages::Model) -> MessageRef {
    MessageRef {
        id: message.id,
        body: message.body.clone(),
    }
}

async fn messages_by_id<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
) -> Result<Vec<messages::Model>, DbErr> {
    messages::Entity::find()
        .filter(messages::Column::Id.is_in(message_ids.iter().copied()))
        .order_by_asc(messages::Column::Id)
        .all(db)
        .await
}

pub async fn replies_lazy<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
) -> Result<Vec<MessageWithReply>, DbErr> {
    let mut answer = Vec::new();
    for message in messages_by_id(db, message_ids).await? {
        let replied = message.find_linked(RepliesTo).one(db).await?;
        answer.push(MessageWithReply {
            id: message.id,
            body: message.body.clone(),
            reply_to: replied.as_ref().map(message_ref),
        });
    }
    Ok(answer)
}

pub async fn replies_joined<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
) -> Result<Vec<MessageWithReply>, DbErr> {
    let rows = messages::Entity::find()
        .filter(messages::Column::Id.is_in(message_ids.iter().copied()))
        .find_also_linked(RepliesTo)
        .order_by_asc(messages::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(message, replied)| MessageWithReply {
            id: message.id,
            body: message.body,
            reply_to: replied.as_ref().map(message_ref),
        })
        .collect())
}

pub async fn replies_select_in<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
) -> Result<Vec<MessageWithReply>, DbErr> {
    let found = messages_by_id(db, message_ids).await?;
    let replied = found
        .load_self(messages::Entity, messages::Relation::SelfRef, db)
        .await?;
    Ok(found
        .into_iter()
        .zip(replied)
        .map(|(message, replied)| MessageWithReply {
            id: message.id,
            body: message.body,
            reply_to: replied.as_ref().map(message_ref),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// 5. Users with their orders and each order's items (nested).

pub async fn user_orders_lazy<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserOrders>, DbErr> {
    let mut answer = Vec::new();
    for user in users_by_id(db, user_ids).await? {
        let their_orders = user
            .find_related(orders::Entity)
            .order_by_asc(orders::Column::Id)
            .all(db)
            .await?;
        let mut with_items = Vec::new();
        for order in their_orders {
            let items = order
                .find_related(products::Entity)
                .order_by_asc(products::Column::Id)
                .all(db)
                .await?;
            with_items.push(OrderWithItems {
                order_id: order.id,
                items: items.iter().map(product_ref).collect(),
            });
        }
        answer.push(UserOrders {
            user_id: user.id,
            username: user.username,
            orders: with_items,
        });
    }
    Ok(answer)
}

pub async fn user_orders_joined<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserOrders>, DbErr> {
    // users LEFT JOIN orders LEFT JOIN order_items LEFT JOIN products: one row per item.
    let rows = users::Entity::find()
        .filter(users::Column::Id.is_in(user_ids.iter().copied()))
        .find_also_related(orders::Entity)
        .and_also_related(products::Entity)
        .order_by_asc(users::Column::Id)
        .order_by_asc(orders::Column::Id)
        .order_by_asc(products::Column::Id)
        .all(db)
        .await?;
    let mut answer: Vec<UserOrders> = Vec::new();
    for (user, order, product) in rows {
        if answer.last().is_none_or(|u| u.user_id != user.id) {
            answer.push(UserOrders {
                user_id: user.id,
                username: user.username.clone(),
                orders: Vec::new(),
            });
        }
        let (Some(current), Some(order)) = (answer.last_mut(), order) else {
            continue;
        };
        if current.orders.last().is_none_or(|o| o.order_id != order.id) {
            current.orders.push(OrderWithItems {
                order_id: order.id,
                items: Vec::new(),
            });
        }
        if let (Some(current_order), Some(product)) = (current.orders.last_mut(), product) {
            current_order.items.push(product_ref(&product));
        }
    }
    Ok(answer)
}

pub async fn user_orders_select_in<C: ConnectionTrait>(
    db: &C,
    user_ids: &[i64],
) -> Result<Vec<UserOrders>, DbErr> {
    // The entity loader, one nested hop: users, their orders (IN), the orders' products (IN).
    let loaded = users::Entity::load()
        .filter(users::Column::Id.is_in(user_ids.iter().copied()))
        .order_by_asc(users::Column::Id)
        .with((orders::Entity, products::Entity))
        .all(db)
        .await?;
    Ok(loaded
        .into_iter()
        .map(|user| {
            let mut their_orders: Vec<OrderWithItems> = user
                .orders
                .iter()
                .map(|order| {
                    let mut items: Vec<ProductRef> = order
                        .products
                        .iter()
                        .map(|p| ProductRef {
                            id: p.id,
                            name: p.name.clone(),
                        })
                        .collect();
                    items.sort_by_key(|item| item.id);
                    OrderWithItems {
                        order_id: order.id,
                        items,
                    }
                })
                .collect();
            their_orders.sort_by_key(|order| order.order_id);
            UserOrders {
                user_id: user.id,
                username: user.username,
                orders: their_orders,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The demo.

/// One strategy's run of one question.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyRun {
    pub strategy: Strategy,
    /// The SeaORM calls it uses.
    pub api: &'static str,
    pub statement_count: usize,
    /// Rows the statements returned, summed: where joined loading repeats each parent once per
    /// child. `None` when row counts are not captured (see `observe::row_count_layer`).
    pub rows: Option<u64>,
    /// Wall time of the whole run, in microseconds.
    pub elapsed_us: u64,
    /// Time spent executing statements, in microseconds.
    pub database_time_us: u64,
    /// Whether the detector found an N+1.
    pub n_plus_one: bool,
    pub findings: Vec<Finding>,
    pub statements: Vec<CapturedStatement>,
}

/// One question, answered every way.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSection {
    pub question: &'static str,
    pub relation: &'static str,
    /// When to prefer which, in two lines.
    pub advice: [&'static str; 2],
    /// Whether every strategy gave the same answer (they must).
    pub same_answer: bool,
    pub runs: Vec<StrategyRun>,
    pub answer: serde_json::Value,
}

/// The whole demo: what it inserted, and every section.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub backend: String,
    pub data: SeededIds,
    pub sections: Vec<DemoSection>,
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

async fn measure<T, F>(
    question: &str,
    strategy: Strategy,
    api: &'static str,
    run: F,
) -> Result<(T, StrategyRun), DbErr>
where
    F: Future<Output = Result<T, DbErr>>,
{
    // Timed inside the scope: the detector's work at the end of the scope (resolving a
    // backtrace's symbols, the first time) is not the strategy's cost.
    let timed = async {
        let started = Instant::now();
        let answer = run.await;
        (answer, started.elapsed())
    };
    let ((answer, elapsed), report) = observe::scope(
        Scope::command(format!("demo: {question} [{strategy:?}]")),
        timed,
    )
    .await;
    let answer = answer?;
    let n_plus_one = report.n_plus_one().next().is_some();
    Ok((
        answer,
        StrategyRun {
            strategy,
            api,
            statement_count: report.statement_count(),
            rows: report.total_rows(),
            elapsed_us: micros(elapsed),
            database_time_us: micros(report.total_database_time()),
            n_plus_one,
            findings: report.findings.clone(),
            statements: report.statements,
        },
    ))
}

/// Runs one question's three strategies and checks they agree.
macro_rules! section {
    ($db:expr, $ids:expr, $question:expr, $relation:expr, $advice:expr,
     [$(($strategy:expr, $api:expr, $function:path)),+ $(,)?]) => {{
        let mut runs = Vec::new();
        let mut answers = Vec::new();
        $(
            let (answer, run) = measure($question, $strategy, $api, $function($db, $ids)).await?;
            answers.push(answer);
            runs.push(run);
        )+
        let same_answer = answers.windows(2).all(|pair| pair[0] == pair[1]);
        DemoSection {
            question: $question,
            relation: $relation,
            advice: $advice,
            same_answer,
            runs,
            answer: serde_json::to_value(&answers[0]).unwrap_or_default(),
        }
    }};
}

/// Inserts the demo data and runs every question with every strategy, inside one transaction
/// that is rolled back: it leaves the database as it found it. `db` should be observed
/// ([`observe::install`]), or the statement counts are all zero.
pub async fn run_demo(db: &DatabaseConnection, size: usize) -> Result<DemoReport, ServiceError> {
    let txn = db.begin().await?;
    let data = observe::unobserved(seed::demo(&txn, size)).await?;
    let backend = format!("{:?}", db.get_database_backend());
    let mut sections = Vec::new();

    sections.push(section!(
        &txn,
        &data.conversations,
        "these conversations with their messages and each message's sender",
        "1-N (conversation → messages), then N-1 (message → sender)",
        [
            "Joined: one round trip, but every message row repeats the conversation's columns and a LIMIT would cut through a conversation.",
            "Select-in: one query per level (3 here), each row read once; the default for has-many, and the only one that paginates parents."
        ],
        [
            (Strategy::Lazy, "find_related(messages) per conversation, find_related(users) per message", threads_lazy),
            (Strategy::Joined, "find_also_related(messages).and_also_related(users)", threads_joined),
            (Strategy::SelectIn, "conversations::Entity::load().with((messages::Entity, users::Entity))", threads_select_in),
        ]
    ));
    sections.push(section!(
        &txn,
        &data.users,
        "these users with their conversations",
        "M-N through conversation_participants",
        [
            "Joined: two LEFT JOINs through the junction; the user's columns repeat per conversation.",
            "Select-in: one query joining the junction with WHERE user_id IN (…); prefer it when users are paginated."
        ],
        [
            (Strategy::Lazy, "find_related(conversations) per user", user_conversations_lazy),
            (Strategy::Joined, "find_with_related(conversations)", user_conversations_joined),
            (Strategy::SelectIn, "LoaderTrait::load_many(conversations)", user_conversations_select_in),
        ]
    ));
    sections.push(section!(
        &txn,
        &data.products,
        "these products with their inventory",
        "1-1 (product → inventory)",
        [
            "Joined: a 1-1 join multiplies nothing, so one LEFT JOIN is the natural choice.",
            "Select-in: a second query; worth it only when the related row is wide or rarely needed."
        ],
        [
            (Strategy::Lazy, "find_related(inventory).one() per product", product_stock_lazy),
            (Strategy::Joined, "find_also_related(inventory)", product_stock_joined),
            (Strategy::SelectIn, "LoaderTrait::load_one(inventory)", product_stock_select_in),
        ]
    ));
    sections.push(section!(
        &txn,
        &data.messages,
        "these messages with the message each replies to",
        "self-referential N-1 (messages.reply_to_id → messages.id)",
        [
            "Joined: a self-join through a Linked (aliased table); one row per message, nothing multiplied.",
            "Select-in: load_self, one IN query over the reply_to ids; the entity loader always does this for self-references."
        ],
        [
            (Strategy::Lazy, "find_linked(RepliesTo).one() per message", replies_lazy),
            (Strategy::Joined, "find_also_linked(RepliesTo)", replies_joined),
            (Strategy::SelectIn, "LoaderTrait::load_self(messages, Relation::SelfRef)", replies_select_in),
        ]
    ));
    sections.push(section!(
        &txn,
        &data.users,
        "these users with their orders and each order's items",
        "nested: 1-N (user → orders), then M-N (order → products through order_items)",
        [
            "Joined: one query of four tables; rows = items, so users and orders repeat, and the fan-out grows with every level.",
            "Select-in: one query per level (3 here) whatever the depth's fan-out; prefer it for nested has-many."
        ],
        [
            (Strategy::Lazy, "find_related(orders) per user, find_related(products) per order", user_orders_lazy),
            (Strategy::Joined, "find_also_related(orders).and_also_related(products)", user_orders_joined),
            (Strategy::SelectIn, "users::Entity::load().with((orders::Entity, products::Entity))", user_orders_select_in),
        ]
    ));

    txn.rollback().await?;
    Ok(DemoReport {
        backend,
        data,
        sections,
    })
}
