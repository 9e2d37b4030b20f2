//! The bulk writer: a [`DataSet`] in as few statements as the bind-parameter limit allows.
//!
//! Rows go in chunks of [`CHUNK_ROWS`], each chunk its own transaction (a savepoint when the
//! target is itself a transaction), split into multi-row `INSERT`s by
//! [`service::bulk::rows_per_statement`]. The ids of users, products, conversations, listed
//! messages and orders come back with `RETURNING`, so rows that refer to them can follow; a
//! listed reply waits for the statement after the one holding the message it answers. Drawn
//! messages, most of the rows of a large set, are generated one chunk at a time and sent with
//! `COPY … FROM STDIN` ([`service::bulk::copy_messages`]) when the target is a PostgreSQL pool,
//! and inserted like the rest otherwise (a `COPY` on the pool would escape a caller's
//! transaction).
//!
//! The statements are this module's own `insert_many`s on the generated entities, checked by
//! [`DataSet::check`] and the database's constraints, not by `service::ops`. MySQL has no
//! `INSERT … RETURNING` (MariaDB has, since 10.5, but SeaORM uses it only with its
//! `mariadb-use-returning` feature, which would break MySQL; so one path serves both, and is
//! tested on MariaDB): there one multi-row `INSERT`'s ids are `LAST_INSERT_ID()` (the first of
//! them) onwards, in steps of `auto_increment_increment`, which InnoDB promises for an `INSERT`
//! whose row count it knows beforehand when `innodb_autoinc_lock_mode` is 0 or 1 — checked
//! first, refused otherwise ([`mysql_id_step`]). The counterpart of `COPY` there is the same
//! chunked multi-row `INSERT`s.

use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use entity::{
    accounts, conversation_participants, conversations, inventory, messages, order_items, orders,
    products, users,
};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, IntoActiveModel, PrimaryKeyTrait, QueryTrait, Set, Statement, TransactionSession,
    TransactionTrait, sqlx::PgPool,
};
use service::{
    ServiceError,
    bulk::{NewMessageRow, copy_messages, insert_chunked, rows_per_statement},
    db::begin_write,
    domain::{money::Money, orders::OrderStatus},
    error::Context,
};

use super::{DataSet, MessageSpec, SeedProgress, SeededIds, TableReport};

/// Rows generated and written per chunk: large enough to amortise round trips, small enough to
/// keep memory flat however many rows are asked for.
pub const CHUNK_ROWS: usize = 20_000;

/// Where the bulk writer can write: a pool or a transaction.
pub trait BulkTarget: ConnectionTrait + TransactionTrait {
    /// The PostgreSQL pool to `COPY` into, if `COPY` keeps the writer's promises here.
    fn copy_pool(&self) -> Option<&PgPool>;
}

impl BulkTarget for DatabaseConnection {
    fn copy_pool(&self) -> Option<&PgPool> {
        (self.get_database_backend() == DbBackend::Postgres)
            .then(|| self.get_postgres_connection_pool())
    }
}

impl BulkTarget for DatabaseTransaction {
    /// None: a `COPY` runs on a pooled connection of its own, outside this transaction, so its
    /// rows would survive a rollback.
    fn copy_pool(&self) -> Option<&PgPool> {
        None
    }
}

/// What the writer created.
#[derive(Debug, Clone)]
pub struct Written {
    pub ids: SeededIds,
    /// Rows and time per group of tables, in the order written: `users`, `accounts`,
    /// `products + inventory`, `conversations + participants`, `messages`, and
    /// `orders + items` when there are orders.
    pub tables: Vec<TableReport>,
}

/// Writes `set` into `db`, calling `progress` after each chunk.
pub async fn write<C: BulkTarget>(
    db: &C,
    set: &DataSet,
    mut progress: impl FnMut(SeedProgress),
) -> Result<Written, ServiceError> {
    set.check()?;
    let mut ids = SeededIds::default();
    let mut tables = Vec::new();
    let mut table = |name, rows: usize, started: Instant| {
        tables.push(TableReport {
            table: name,
            rows: rows as u64,
            elapsed: started.elapsed(),
        });
    };

    let started = Instant::now();
    let now = timestamp();
    let users = set.users.iter().map(|user| users::ActiveModel {
        username: Set(user.username.as_str().to_owned()),
        username_canonical: Set(user.username.canonical()),
        email: Set(user.email.as_str().to_owned()),
        email_canonical: Set(user.email.canonical()),
        display_name: Set(user.display_name.as_str().to_owned()),
        created_at: Set(now.into()),
        ..Default::default()
    });
    let mut counter = Counter::new("users", set.users.len(), &mut progress);
    ids.users = insert_returning_ids(db, users, &mut counter).await?;
    table("users", set.users.len(), started);

    let started = Instant::now();
    let accounts = set
        .users
        .iter()
        .zip(&ids.users)
        .map(|(user, &user_id)| accounts::ActiveModel {
            user_id: Set(user_id),
            balance: Set(user.balance.as_decimal()),
            updated_at: Set(now.into()),
        });
    let mut counter = Counter::new("accounts", set.users.len(), &mut progress);
    let rows = insert(db, accounts, &mut counter).await?;
    table("accounts", rows, started);

    let started = Instant::now();
    let now = timestamp();
    let products = set.products.iter().map(|product| products::ActiveModel {
        sku: Set(product.sku.as_str().to_owned()),
        name: Set(product.name.as_str().to_owned()),
        price: Set(product.price.as_decimal()),
        seller_id: Set(ids.users[product.seller]),
        created_at: Set(now.into()),
        ..Default::default()
    });
    let mut counter = Counter::new("products", set.products.len(), &mut progress);
    ids.products = insert_returning_ids(db, products, &mut counter).await?;
    let stocked = set.products.iter().filter(|p| p.stock.is_some()).count();
    let inventory = set
        .products
        .iter()
        .zip(&ids.products)
        .filter_map(|(product, &product_id)| {
            product.stock.map(|stock| inventory::ActiveModel {
                product_id: Set(product_id),
                quantity: Set(stock.get()),
            })
        });
    let mut counter = Counter::new("inventory", stocked, &mut progress);
    let rows = insert(db, inventory, &mut counter).await?;
    table("products + inventory", set.products.len() + rows, started);

    let started = Instant::now();
    let now = timestamp();
    let conversations = set
        .conversations
        .iter()
        .map(|c| conversations::ActiveModel {
            title: Set(c.title.as_str().to_owned()),
            product_id: Set(c.product.map(|p| ids.products[p])),
            created_by: Set(ids.users[c.creator]),
            created_at: Set(now.into()),
            ..Default::default()
        });
    let mut counter = Counter::new("conversations", set.conversations.len(), &mut progress);
    ids.conversations = insert_returning_ids(db, conversations, &mut counter).await?;
    let participants: Vec<(i64, i64)> = set
        .conversations
        .iter()
        .zip(&ids.conversations)
        .flat_map(|(conversation, &conversation_id)| {
            conversation
                .participants()
                .into_iter()
                .map(move |user| (conversation_id, user))
        })
        .map(|(conversation_id, user)| (conversation_id, ids.users[user]))
        .collect();
    let rows = participants.iter().map(|&(conversation_id, user_id)| {
        conversation_participants::ActiveModel {
            conversation_id: Set(conversation_id),
            user_id: Set(user_id),
            joined_at: Set(now.into()),
        }
    });
    let mut counter = Counter::new(
        "conversation_participants",
        participants.len(),
        &mut progress,
    );
    let rows = insert(db, rows, &mut counter).await?;
    table(
        "conversations + participants",
        set.conversations.len() + rows,
        started,
    );

    let started = Instant::now();
    let total = usize::try_from(set.message_count()).unwrap_or(usize::MAX);
    let mut counter = Counter::new("messages", total, &mut progress);
    ids.messages = write_listed_messages(db, &set.messages, &ids, &mut counter).await?;
    if let Some(drawn) = &set.drawn_messages {
        let mut messages = drawn.draw(&set.conversations);
        loop {
            let chunk = messages
                .by_ref()
                .take(CHUNK_ROWS)
                .collect::<Result<Vec<MessageSpec>, _>>()?;
            if chunk.is_empty() {
                break;
            }
            write_drawn_chunk(db, &chunk, &ids, &mut counter).await?;
        }
    }
    table("messages", counter.done, started);

    if !set.orders.is_empty() {
        let started = Instant::now();
        let now = timestamp();
        let price = |product: usize| set.products[product].price;
        let mut totals = Vec::with_capacity(set.orders.len());
        for order in &set.orders {
            let total = order.lines.iter().try_fold(Money::ZERO, |sum, &(p, qty)| {
                price(p)
                    .checked_mul(i64::from(qty.get()))
                    .and_then(|line| sum.checked_add(line))
            });
            totals.push(total.ok_or_else(|| {
                ServiceError::validation("total", "an order's total must be money")
            })?);
        }
        let orders = set
            .orders
            .iter()
            .zip(totals)
            .map(|(order, total)| orders::ActiveModel {
                buyer_id: Set(ids.users[order.buyer]),
                status: Set(OrderStatus::Paid.as_str().to_owned()),
                total: Set(total.as_decimal()),
                idempotency_key: Set(None),
                created_at: Set(now.into()),
                cancelled_at: Set(None),
                ..Default::default()
            });
        let mut counter = Counter::new("orders", set.orders.len(), &mut progress);
        ids.orders = insert_returning_ids(db, orders, &mut counter).await?;
        let lines: usize = set.orders.iter().map(|o| o.lines.len()).sum();
        // Positions count from 0, as `service::repo::orders::insert_items` numbers them.
        let product_ids = &ids.products;
        let items = set
            .orders
            .iter()
            .zip(&ids.orders)
            .flat_map(|(order, &order_id)| {
                order
                    .lines
                    .iter()
                    .zip(0..)
                    .map(
                        move |(&(product, quantity), position)| order_items::ActiveModel {
                            order_id: Set(order_id),
                            product_id: Set(product_ids[product]),
                            position: Set(position),
                            quantity: Set(quantity.get()),
                            unit_price: Set(price(product).as_decimal()),
                        },
                    )
            });
        let mut counter = Counter::new("order_items", lines, &mut progress);
        let rows = insert(db, items, &mut counter).await?;
        table("orders + items", set.orders.len() + rows, started);
    }

    Ok(Written { ids, tables })
}

/// Now, at the precision the databases keep (PostgreSQL: microseconds), as the application
/// stores it.
fn timestamp() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// One table's rows as their chunks commit, reported after each.
struct Counter<'a, F: FnMut(SeedProgress)> {
    table: &'static str,
    total: u64,
    done: usize,
    report: &'a mut F,
}

impl<'a, F: FnMut(SeedProgress)> Counter<'a, F> {
    fn new(table: &'static str, total: usize, report: &'a mut F) -> Self {
        Counter {
            table,
            total: total as u64,
            done: 0,
            report,
        }
    }

    fn add(&mut self, rows: usize) {
        self.done += rows;
        (self.report)(SeedProgress {
            table: self.table,
            done: self.done as u64,
            total: self.total,
        });
    }
}

/// Inserts `models` in chunks of [`CHUNK_ROWS`], each in its own transaction.
async fn insert<C, A>(
    db: &C,
    models: impl Iterator<Item = A>,
    counter: &mut Counter<'_, impl FnMut(SeedProgress)>,
) -> Result<usize, ServiceError>
where
    C: BulkTarget,
    A: ActiveModelTrait + Send,
{
    let mut models = models.peekable();
    let before = counter.done;
    while models.peek().is_some() {
        let chunk: Vec<A> = models.by_ref().take(CHUNK_ROWS).collect();
        let rows = chunk.len();
        let txn = begin_write(db).await?;
        insert_chunked(&txn, chunk).await?;
        txn.commit().await?;
        counter.add(rows);
    }
    Ok(counter.done - before)
}

/// As [`insert`], returning the new rows' ids in the order of `models`.
async fn insert_returning_ids<C, A>(
    db: &C,
    models: impl Iterator<Item = A>,
    counter: &mut Counter<'_, impl FnMut(SeedProgress)>,
) -> Result<Vec<i64>, ServiceError>
where
    C: BulkTarget,
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType: Into<i64>,
{
    let mut models = models.peekable();
    let mut ids = Vec::new();
    let backend = db.get_database_backend();
    let mysql_step = match backend {
        DbBackend::MySql if models.peek().is_some() => Some(mysql_id_step(db).await?),
        _ => None,
    };
    while models.peek().is_some() {
        let chunk: Vec<A> = models.by_ref().take(CHUNK_ROWS).collect();
        let rows = chunk.len();
        let txn = begin_write(db).await?;
        let per_statement = rows_per_statement::<A::Entity>(backend);
        let mut chunk = chunk.into_iter().peekable();
        while chunk.peek().is_some() {
            let statement: Vec<A> = chunk.by_ref().take(per_statement).collect();
            if let Some(step) = mysql_step {
                let count = statement.len() as i64;
                let insert = A::Entity::insert_many(statement).build(backend);
                let first = txn.execute_raw(insert).await?.last_insert_id() as i64;
                ids.extend((0..count).map(|i| first + i * step));
                continue;
            }
            let mut keys: Vec<i64> = A::Entity::insert_many(statement)
                .exec_with_returning_keys(&txn)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            // Ids are handed out in the order the rows are inserted, but `RETURNING` promises
            // no order: sorting restores the one of `models`.
            keys.sort_unstable();
            ids.extend(keys);
        }
        txn.commit().await?;
        counter.add(rows);
    }
    Ok(ids)
}

/// MySQL and MariaDB: the step between the ids of one multi-row `INSERT`
/// (`auto_increment_increment`), once the server's `innodb_autoinc_lock_mode` is known to hand
/// such an `INSERT` consecutive ids. Mode 2 ("interleaved", MySQL 8's default) may interleave
/// concurrent inserts' ids, so the ids could not be known without `RETURNING`: refused.
async fn mysql_id_step<C: ConnectionTrait>(db: &C) -> Result<i64, ServiceError> {
    let statement = Statement::from_string(
        DbBackend::MySql,
        "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS lock_mode, \
         CAST(@@auto_increment_increment AS SIGNED) AS step",
    );
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| ServiceError::validation("database", "the server did not answer"))?;
    let lock_mode: i64 = row
        .try_get("", "lock_mode")
        .context("reading the lock mode")?;
    let step: i64 = row.try_get("", "step").context("reading the step")?;
    if lock_mode > 1 || step < 1 {
        return Err(ServiceError::validation(
            "database",
            format!(
                "seeding MySQL needs innodb_autoinc_lock_mode 0 or 1 (it is {lock_mode}) to know \
                 the ids of a multi-row INSERT without RETURNING"
            ),
        ));
    }
    Ok(step)
}

/// Listed messages in runs of which none answers another of the same run, so that every reply
/// is inserted after the message it names has its id. Returns their ids in order.
async fn write_listed_messages<C: BulkTarget>(
    db: &C,
    listed: &[MessageSpec],
    ids: &SeededIds,
    counter: &mut Counter<'_, impl FnMut(SeedProgress)>,
) -> Result<Vec<i64>, ServiceError> {
    let mut message_ids: Vec<i64> = Vec::with_capacity(listed.len());
    let mut start = 0;
    while start < listed.len() {
        // `check` guarantees a reply names an earlier message, so the run holds one at least.
        let end = listed[start + 1..]
            .iter()
            .position(|m| m.reply_to.is_some_and(|replied| replied >= start))
            .map_or(listed.len(), |offset| start + 1 + offset);
        let now = timestamp();
        let run = listed[start..end]
            .iter()
            .map(|message| messages::ActiveModel {
                conversation_id: Set(ids.conversations[message.conversation]),
                sender_id: Set(ids.users[message.sender]),
                reply_to_id: Set(message.reply_to.map(|replied| message_ids[replied])),
                body: Set(message.body.as_str().to_owned()),
                created_at: Set(now.into()),
                ..Default::default()
            });
        let run_ids = insert_returning_ids(db, run, counter).await?;
        message_ids.extend(run_ids);
        start = end;
    }
    Ok(message_ids)
}

/// One chunk of drawn messages: `COPY` where [`BulkTarget::copy_pool`] allows it, else INSERTs
/// in a transaction of its own.
async fn write_drawn_chunk<C: BulkTarget>(
    db: &C,
    chunk: &[MessageSpec],
    ids: &SeededIds,
    counter: &mut Counter<'_, impl FnMut(SeedProgress)>,
) -> Result<(), ServiceError> {
    let now = timestamp();
    let rows: Vec<NewMessageRow> = chunk
        .iter()
        .map(|message| NewMessageRow {
            conversation_id: ids.conversations[message.conversation],
            sender_id: ids.users[message.sender],
            reply_to_id: None,
            body: message.body.as_str().to_owned(),
            created_at: now,
        })
        .collect();
    match db.copy_pool() {
        Some(pool) => {
            copy_messages(pool, &rows).await?;
            counter.add(rows.len());
        }
        None => {
            let models = rows.into_iter().map(|row| messages::ActiveModel {
                conversation_id: Set(row.conversation_id),
                sender_id: Set(row.sender_id),
                reply_to_id: Set(row.reply_to_id),
                body: Set(row.body),
                created_at: Set(row.created_at.into()),
                ..Default::default()
            });
            insert(db, models, counter).await?;
        }
    }
    Ok(())
}
