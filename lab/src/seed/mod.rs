//! The one seeder. Every data set Mercado makes is a [`DataSet`]: the first-run demo data
//! `serve` loads into an empty database, the related rows `mercado demo` and `mercado compare`
//! run on, and the sized sets of `mercado seed` and the benchmarks. A data set describes rows by
//! position (user 3 sells product 7; ids are the database's to give) and holds the domain's own
//! types (`Username`, `Money`, `Title`, …), so every value in it has passed the rules a request
//! must pass. A recipe in [`recipes`] makes one, deterministically; a writer puts it into a
//! database:
//!
//! - [`bulk`], for sets of any size: multi-row `INSERT`s chunked under the bind-parameter
//!   limit, and `COPY … FROM STDIN` for drawn messages on PostgreSQL. It writes exactly what the
//!   description says, checked by [`DataSet::check`] and the database's constraints.
//! - [`through_service`], for the small first-run set: one `service::ops` call per thing, each
//!   its own transaction with the validation and side effects of a request (an opened account,
//!   a hashed token, a deposit).
//!
//! The database is reached only through `service`'s public API (`service::bulk`, `service::db`,
//! `service::ops`) and the bulk writer's own `insert_many` statements on the generated
//! entities, which live in [`bulk`] and nowhere else in this crate.

pub mod bulk;
pub mod recipes;
pub mod through_service;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use service::{
    ServiceError,
    domain::{
        chat::{MessageBody, Title},
        money::Money,
        orders::Quantity,
        products::{ProductName, Sku, Stock},
        users::{DisplayName, Email, Username},
    },
};

pub use bulk::BulkTarget;

/// What to create. Rows refer to one another by their index in these lists.
#[derive(Debug, Clone, Default)]
pub struct DataSet {
    pub users: Vec<UserSpec>,
    pub products: Vec<ProductSpec>,
    pub conversations: Vec<ConversationSpec>,
    /// Messages written one by one, in this order; a reply names an earlier one by its index.
    pub messages: Vec<MessageSpec>,
    /// More messages, drawn at random while they are written (after `messages`): how a set of
    /// a million messages is described without holding a million in memory.
    pub drawn_messages: Option<DrawnMessages>,
    pub orders: Vec<OrderSpec>,
}

#[derive(Debug, Clone)]
pub struct UserSpec {
    pub username: Username,
    pub email: Email,
    pub display_name: DisplayName,
    /// What their account holds to begin with. Every user has an account, as registration
    /// opens one.
    pub balance: Money,
}

#[derive(Debug, Clone)]
pub struct ProductSpec {
    /// The user who sells it.
    pub seller: usize,
    pub sku: Sku,
    pub name: ProductName,
    pub price: Money,
    /// Its inventory row; `None` for none, the optional 1-1 the loading demo shows. Only the
    /// bulk writer can write that: the application creates every product with its stock.
    pub stock: Option<Stock>,
}

#[derive(Debug, Clone)]
pub struct ConversationSpec {
    pub title: Title,
    pub creator: usize,
    /// Everyone else in it.
    pub others: Vec<usize>,
    /// The product it is about.
    pub product: Option<usize>,
}

impl ConversationSpec {
    /// Who takes part: the creator first, then the others, each once.
    pub fn participants(&self) -> Vec<usize> {
        let mut participants = vec![self.creator];
        for &other in &self.others {
            if !participants.contains(&other) {
                participants.push(other);
            }
        }
        participants
    }
}

#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub conversation: usize,
    /// A participant of the conversation.
    pub sender: usize,
    /// The message it answers: an earlier one of [`DataSet::messages`], in the same
    /// conversation.
    pub reply_to: Option<usize>,
    pub body: MessageBody,
}

/// A paid order; each line costs its product's price, and the total is their sum.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    pub buyer: usize,
    /// `(product, quantity)`, in the order they were sent.
    pub lines: Vec<(usize, Quantity)>,
}

/// `count` short messages, each from a participant of a conversation chosen at random, none a
/// reply. They are drawn from `rng` as they are written ([`DrawnMessages::draw`]), so the
/// same set always yields the same messages.
#[derive(Debug, Clone)]
pub struct DrawnMessages {
    pub count: u64,
    rng: StdRng,
}

impl DataSet {
    /// Checks what both writers rely on: every reference by position names a row of the set,
    /// every message's sender takes part in its conversation, a reply answers an earlier message
    /// of the same conversation, every order has a line, and drawn messages have conversations
    /// to be drawn into.
    pub fn check(&self) -> Result<(), ServiceError> {
        let users = self.users.len();
        let refused = |field, message: &str| Err(ServiceError::validation(field, message));
        if self.products.iter().any(|p| p.seller >= users) {
            return refused("seller", "must be a user of the set");
        }
        for conversation in &self.conversations {
            if conversation.participants().iter().any(|&u| u >= users) {
                return refused("participant_ids", "must be users of the set");
            }
            if conversation
                .product
                .is_some_and(|p| p >= self.products.len())
            {
                return refused("product_id", "must be a product of the set");
            }
        }
        for (index, message) in self.messages.iter().enumerate() {
            let Some(conversation) = self.conversations.get(message.conversation) else {
                return refused("conversation", "must be a conversation of the set");
            };
            if !conversation.participants().contains(&message.sender) {
                return refused("sender", "must take part in the conversation");
            }
            if let Some(replied) = message.reply_to {
                let same_conversation = self
                    .messages
                    .get(replied)
                    .is_some_and(|m| m.conversation == message.conversation);
                if replied >= index || !same_conversation {
                    return refused(
                        "reply_to_id",
                        "must be an earlier message of the same conversation",
                    );
                }
            }
        }
        let drawn = self.drawn_messages.as_ref().map_or(0, |d| d.count);
        if drawn > 0 && self.conversations.is_empty() {
            return refused("conversations", "messages need conversations");
        }
        for order in &self.orders {
            if order.buyer >= users {
                return refused("buyer", "must be a user of the set");
            }
            if order.lines.is_empty() {
                return refused("items", "an order has at least one line");
            }
            if order.lines.iter().any(|&(p, _)| p >= self.products.len()) {
                return refused("product_id", "must be a product of the set");
            }
        }
        Ok(())
    }

    /// How many messages it makes, listed and drawn.
    pub fn message_count(&self) -> u64 {
        self.messages.len() as u64 + self.drawn_messages.as_ref().map_or(0, |d| d.count)
    }
}

/// The ids the database gave the rows, by position in the set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeededIds {
    pub users: Vec<i64>,
    pub products: Vec<i64>,
    pub conversations: Vec<i64>,
    /// Those of [`DataSet::messages`]; drawn messages are not read back.
    pub messages: Vec<i64>,
    pub orders: Vec<i64>,
}

// ---------------------------------------------------------------------------------------------
// `mercado seed` and the benchmarks.

/// How many rows of each kind to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSizes {
    pub users: u64,
    pub conversations: u64,
    pub messages: u64,
    pub products: u64,
}

impl Default for SeedSizes {
    fn default() -> Self {
        SeedSizes {
            users: 100,
            conversations: 200,
            messages: 10_000,
            products: 100,
        }
    }
}

/// Progress of one table, reported after each chunk.
#[derive(Debug, Clone, Copy)]
pub struct SeedProgress {
    pub table: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What a seed created, and how fast.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub tag: String,
    pub tables: Vec<TableReport>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: &'static str,
    pub rows: u64,
    pub elapsed: Duration,
}

impl SeedReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn rows_per_second(&self) -> f64 {
        self.rows() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl TableReport {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Seeds a [`recipes::generated`] set of `sizes` into `db` with the [`bulk`] writer, calling
/// `progress` after each chunk. `seed_value` makes the content reproducible; the run tag in
/// every name stays unique, so a seed can be added to a database that holds data already. Each
/// chunk is its own transaction: an interrupted seed keeps the chunks it finished.
pub async fn seed(
    db: &DatabaseConnection,
    sizes: SeedSizes,
    seed_value: u64,
    progress: impl FnMut(SeedProgress),
) -> Result<SeedReport, ServiceError> {
    let started = Instant::now();
    let tag = format!("{:08x}", rand::random::<u32>());
    let set = recipes::generated(sizes, seed_value, &tag)?;
    let written = bulk::write(db, &set, progress).await?;
    Ok(SeedReport {
        tag,
        tables: written.tables,
        elapsed: started.elapsed(),
    })
}

/// Writes a [`recipes::demo`] set of `size` into `db` (a pool, or a transaction to roll back)
/// with the [`bulk`] writer: the related rows `mercado demo`, `mercado compare` and the tests
/// run on. Names carry a random tag, so it can run on a database that has data already.
pub async fn demo<C: BulkTarget>(db: &C, size: usize) -> Result<SeededIds, ServiceError> {
    let set = recipes::demo(size)?;
    Ok(bulk::write(db, &set, |_| {}).await?.ids)
}
