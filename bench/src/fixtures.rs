//! Rows the measurements need beyond the seed: orders for the ORM-against-raw cases, stock and
//! money topped up before order runs, API tokens for HTTP callers, the loading fixtures and the
//! scratch conversation of the bulk-insert section. Every value is bound.

use anyhow::{Context, bail};
use chrono::{SubsecRound, Utc};
use entity::conversations;
use rust_decimal::Decimal;
use sea_orm::Set;
use serde::{Deserialize, Serialize};
use service::{
    bulk::{NewMessageRow, copy_messages, insert_chunked},
    domain::orders::{OrderLines, PlaceOrder, Quantity},
};
use sqlx::PgPool;

use crate::setup::{BenchDatabase, SeededIds, read_marker, write_marker};

/// What a top-up sets balances to: far more than any run can spend.
pub(crate) const TOPPED_UP_BALANCE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 2);
/// What a top-up sets stock to: far more than any run can sell.
pub(crate) const TOPPED_UP_STOCK: i32 = 1_000_000_000;
/// Title prefixes of the loading fixtures: how re-runs find them.
const LOADING_FEW_TITLE: &str = "Bench loading few #";
const LOADING_MANY_TITLE: &str = "Bench loading many #";
const LOADING_TITLE_PREFIX: &str = "Bench loading ";
const LOADING_MARKER_KEY: &str = "loading_fixture";
/// Messages per COPY, so the fixture's memory stays flat.
const COPY_CHUNK_ROWS: usize = 100_000;

/// The buyers of the ORM-against-raw order cases: the first ten seeded users.
pub(crate) fn compare_buyers(ids: &SeededIds) -> Vec<i64> {
    ids.users.iter().take(10).copied().collect()
}

/// Products are split so that no run drains another's stock: the first few are the contended
/// ones of the order runs, the last half the spread ones, and the product just below the middle
/// is the ORM-against-raw guarded update's; the three below it are bought by the compare orders.
pub(crate) fn compare_product(ids: &SeededIds) -> anyhow::Result<i64> {
    let middle = ids.products.len() / 2;
    if middle < 5 {
        bail!("the seed needs at least 10 products");
    }
    Ok(ids.products[middle - 1])
}

fn compare_order_products(ids: &SeededIds) -> Vec<i64> {
    let middle = ids.products.len() / 2;
    ids.products[middle.saturating_sub(4)..middle - 1].to_vec()
}

pub(crate) fn contended_products(ids: &SeededIds, count: usize) -> anyhow::Result<Vec<i64>> {
    if count + 5 > ids.products.len() / 2 {
        bail!("{count} contended products leave too few for the other runs");
    }
    Ok(ids.products[..count].to_vec())
}

pub(crate) fn spread_products(ids: &SeededIds, count: usize) -> Vec<i64> {
    let count = count.min(ids.products.len() / 2);
    ids.products[ids.products.len() - count..].to_vec()
}

pub(crate) async fn top_up_balances(pool: &PgPool, users: &[i64]) -> anyhow::Result<()> {
    sqlx::query("UPDATE accounts SET balance = $1 WHERE user_id = ANY($2)")
        .bind(TOPPED_UP_BALANCE)
        .bind(users)
        .execute(pool)
        .await
        .context("topping up balances")?;
    Ok(())
}

pub(crate) async fn top_up_stock(pool: &PgPool, products: &[i64]) -> anyhow::Result<()> {
    sqlx::query("UPDATE inventory SET quantity = $1 WHERE product_id = ANY($2)")
        .bind(TOPPED_UP_STOCK)
        .bind(products)
        .execute(pool)
        .await
        .context("topping up stock")?;
    Ok(())
}

/// An order of one unit of each product, without an idempotency key.
pub(crate) fn one_of_each(products: &[i64]) -> anyhow::Result<PlaceOrder> {
    let lines = products
        .iter()
        .map(|&id| Ok((id, Quantity::new(1)?)))
        .collect::<Result<Vec<_>, service::ServiceError>>()?;
    Ok(PlaceOrder {
        lines: OrderLines::new(lines)?,
        idempotency_key: None,
    })
}

/// Gives each compare buyer two paid orders of three lines, through `place_order`, unless they
/// have them already.
pub(crate) async fn ensure_compare_orders(
    db: &BenchDatabase,
    ids: &SeededIds,
) -> anyhow::Result<()> {
    let buyers = compare_buyers(ids);
    let paid: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE buyer_id = ANY($1) AND status = $2")
            .bind(&buyers)
            .bind("paid")
            .fetch_one(db.pool())
            .await?;
    if paid >= 2 * buyers.len() as i64 {
        return Ok(());
    }
    let products = compare_order_products(ids);
    top_up_balances(db.pool(), &buyers).await?;
    top_up_stock(db.pool(), &products).await?;
    for &buyer in &buyers {
        for _ in 0..2 {
            service::ops::orders::place_order(&db.app, buyer, one_of_each(&products)?)
                .await
                .context("placing the compare orders")?;
        }
    }
    Ok(())
}

/// The loading fixtures: `parents` conversations with `few` messages each, and `parents` with
/// `many` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadingFixture {
    pub(crate) parents: usize,
    pub(crate) few: usize,
    pub(crate) many: usize,
    pub(crate) few_ids: Vec<i64>,
    pub(crate) many_ids: Vec<i64>,
}

/// Reuses the loading fixtures when their marker matches the sizes; otherwise deletes any old
/// ones and creates them (conversations by chunked INSERT, messages by COPY).
pub(crate) async fn loading_fixture(
    db: &BenchDatabase,
    ids: &SeededIds,
    parents: usize,
    few: usize,
    many: usize,
) -> anyhow::Result<LoadingFixture> {
    let pool = db.pool();
    if let Some(existing) = read_marker::<LoadingFixture>(pool, LOADING_MARKER_KEY).await?
        && existing.parents == parents
        && existing.few == few
        && existing.many == many
    {
        println!("  reusing the loading fixtures");
        return Ok(existing);
    }
    println!(
        "  creating loading fixtures: {parents} conversations × {few} messages and {parents} × {many}"
    );
    sqlx::query(
        "DELETE FROM messages WHERE conversation_id IN \
         (SELECT id FROM conversations WHERE title LIKE $1 || '%')",
    )
    .bind(LOADING_TITLE_PREFIX)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM conversations WHERE title LIKE $1 || '%'")
        .bind(LOADING_TITLE_PREFIX)
        .execute(pool)
        .await?;
    let few_ids = fixture_conversations(db, ids, LOADING_FEW_TITLE, parents, few).await?;
    let many_ids = fixture_conversations(db, ids, LOADING_MANY_TITLE, parents, many).await?;
    sqlx::query("ANALYZE messages").execute(pool).await?;
    let fixture = LoadingFixture {
        parents,
        few,
        many,
        few_ids,
        many_ids,
    };
    write_marker(pool, LOADING_MARKER_KEY, &fixture).await?;
    Ok(fixture)
}

async fn fixture_conversations(
    db: &BenchDatabase,
    ids: &SeededIds,
    title: &str,
    count: usize,
    messages_each: usize,
) -> anyhow::Result<Vec<i64>> {
    let creator = *ids.users.first().context("the seed has no users")?;
    let now = Utc::now().trunc_subsecs(6);
    let models = (0..count)
        .map(|i| conversations::ActiveModel {
            title: Set(format!("{title}{i}")),
            product_id: Set(None),
            created_by: Set(creator),
            created_at: Set(now.fixed_offset()),
            ..Default::default()
        })
        .collect();
    insert_chunked(&db.plain, models).await?;
    let conversation_ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM conversations WHERE title LIKE $1 || '%' ORDER BY id")
            .bind(title)
            .fetch_all(db.pool())
            .await?;
    // Senders cycle through the seeded users, so a lazy load fetches a sender per message.
    let mut sender = ids.users.iter().copied().cycle();
    let total = count * messages_each;
    let mut rows = Vec::with_capacity(COPY_CHUNK_ROWS.min(total));
    for &conversation_id in &conversation_ids {
        for i in 0..messages_each {
            rows.push(NewMessageRow {
                conversation_id,
                sender_id: sender.next().unwrap_or(creator),
                reply_to_id: None,
                body: format!("Loading fixture message {i}"),
                created_at: now,
            });
            if rows.len() == COPY_CHUNK_ROWS {
                copy_messages(db.pool(), &rows).await?;
                rows.clear();
            }
        }
    }
    if !rows.is_empty() {
        copy_messages(db.pool(), &rows).await?;
    }
    Ok(conversation_ids)
}

/// A fresh conversation for the bulk-insert section, created by the first seeded user.
pub(crate) async fn scratch_conversation(
    db: &BenchDatabase,
    ids: &SeededIds,
) -> anyhow::Result<i64> {
    let creator = *ids.users.first().context("the seed has no users")?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (title, product_id, created_by, created_at) \
         VALUES ($1, NULL, $2, now()) RETURNING id",
    )
    .bind(format!(
        "Bench bulk scratch {}",
        Utc::now().timestamp_micros()
    ))
    .bind(creator)
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

/// Deletes the scratch conversation's messages, then the conversation.
pub(crate) async fn delete_conversation(pool: &PgPool, conversation_id: i64) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
        .bind(conversation_id)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM conversations WHERE id = $1")
        .bind(conversation_id)
        .execute(pool)
        .await?;
    Ok(())
}
