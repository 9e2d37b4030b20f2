//! Section 1: each canonical query of `mercado_lab::compare` three ways — SeaORM's first attempt,
//! SeaORM done right, and raw sqlx with the same SQL text and bound values as the comparison's
//! raw side — on the same pool.

use std::time::Instant;

use anyhow::{Context, bail};
use mercado_lab::compare::{
    self, CONVERSATIONS_WITH_LAST_MESSAGE_SQL, CaseInputs, ConversationWithLastMessage,
    GUARDED_UPDATE_SQL, GuardedUpdate, LAST_MESSAGES_SQL, MessageWithSender, ORDER_LINES_SQL,
    OrderLine, PRODUCT_SEARCH_SQL, ProductHit, Spender,
};
use rust_decimal::Decimal;
use sea_orm::{DatabaseConnection, FromQueryResult, SelectModel, Selector, Statement};
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    fixtures,
    setup::{BenchDatabase, SeededIds},
    stats::{LatencySummary, Samples, median, ratio},
};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseFigures {
    pub(crate) case: &'static str,
    pub(crate) iterations: usize,
    /// The first attempt (`compare::*_orm`).
    pub(crate) orm: LatencySummary,
    /// The ORM done right (`compare::*_tuned`); for the three cases whose first attempt is
    /// already right, the same function measured again.
    pub(crate) tuned: LatencySummary,
    pub(crate) raw_sqlx: LatencySummary,
    /// First-attempt median ÷ raw median.
    pub(crate) orm_over_raw_median: f64,
    /// Tuned median ÷ raw median.
    pub(crate) tuned_over_raw_median: f64,
    pub(crate) rows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrmVsRaw {
    pub(crate) inputs: InputsShown,
    pub(crate) cases: Vec<CaseFigures>,
}

/// The inputs, as chosen from the large database.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InputsShown {
    pub(crate) conversation_id: i64,
    pub(crate) conversation_messages: i64,
    pub(crate) user_id: i64,
    pub(crate) user_conversations: i64,
    pub(crate) search_text: String,
    pub(crate) order_id: i64,
    pub(crate) order_buyer_id: i64,
    pub(crate) buyer_ids: Vec<i64>,
    pub(crate) product_in_stock: i64,
}

/// Picks real inputs: the seeded conversation with the most messages, the seeded user in the
/// most conversations, an order with several lines, buyers with paid orders (placing a few
/// orders first when the database has none), and a product whose stock is known.
async fn choose_inputs(db: &BenchDatabase, ids: &SeededIds) -> anyhow::Result<InputsShown> {
    let pool = db.pool();
    let (conversation_id, conversation_messages): (i64, i64) = sqlx::query_as(
        "SELECT m.conversation_id, COUNT(*) FROM messages m \
         WHERE m.conversation_id = ANY($1) \
         GROUP BY m.conversation_id ORDER BY COUNT(*) DESC, m.conversation_id LIMIT 1",
    )
    .bind(&ids.conversations)
    .fetch_one(pool)
    .await
    .context("choosing a conversation with many messages")?;
    let (user_id, user_conversations): (i64, i64) = sqlx::query_as(
        "SELECT p.user_id, COUNT(*) FROM conversation_participants p \
         WHERE p.conversation_id = ANY($1) \
         GROUP BY p.user_id ORDER BY COUNT(*) DESC, p.user_id LIMIT 1",
    )
    .bind(&ids.conversations)
    .fetch_one(pool)
    .await
    .context("choosing a user in many conversations")?;

    let buyers = fixtures::compare_buyers(ids);
    fixtures::ensure_compare_orders(db, ids).await?;
    let (order_id, order_buyer_id): (i64, i64) = sqlx::query_as(
        "SELECT o.id, o.buyer_id FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE o.buyer_id = ANY($1) GROUP BY o.id ORDER BY COUNT(*) DESC, o.id LIMIT 1",
    )
    .bind(&buyers)
    .fetch_one(pool)
    .await
    .context("choosing an order with several lines")?;

    let product_in_stock = fixtures::compare_product(ids)?;
    // A known stock: 3 can be taken, a million cannot.
    sqlx::query("UPDATE inventory SET quantity = $1 WHERE product_id = $2")
        .bind(500_i32)
        .bind(product_in_stock)
        .execute(pool)
        .await?;

    let name: String = sqlx::query_scalar("SELECT name FROM products WHERE id = $1")
        .bind(ids.products.first().copied().unwrap_or_default())
        .fetch_one(pool)
        .await?;
    // "Lamp 0" → "Lamp": a tenth of the seeded products share the word (no other name contains
    // it), more than the limit of 5, so the sort and the limit do work.
    let word = name.split_whitespace().next().unwrap_or("Lamp");
    Ok(InputsShown {
        conversation_id,
        conversation_messages,
        user_id,
        user_conversations,
        search_text: word.to_owned(),
        order_id,
        order_buyer_id,
        buyer_ids: buyers,
        product_in_stock,
    })
}

fn case_inputs(shown: &InputsShown) -> CaseInputs {
    CaseInputs {
        conversation_id: shown.conversation_id,
        user_id: shown.user_id,
        search_text: shown.search_text.clone(),
        order_id: shown.order_id,
        order_buyer_id: shown.order_buyer_id,
        buyer_ids: shown.buyer_ids.clone(),
        product_in_stock: shown.product_in_stock,
    }
}

// ---------------------------------------------------------------------------------------------
// The raw sqlx side: the service's SQL text, bound the same way, mapped by hand.

async fn last_messages_sqlx(
    pool: &PgPool,
    input: &CaseInputs,
) -> anyhow::Result<Vec<MessageWithSender>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(LAST_MESSAGES_SQL)
        .bind(input.conversation_id)
        .bind(10_i64)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, body, sender)| MessageWithSender { id, body, sender })
        .collect())
}

async fn conversations_sqlx(
    pool: &PgPool,
    input: &CaseInputs,
) -> anyhow::Result<Vec<ConversationWithLastMessage>> {
    let rows: Vec<(i64, String, Option<i64>, Option<String>)> =
        sqlx::query_as(CONVERSATIONS_WITH_LAST_MESSAGE_SQL)
            .bind(input.user_id)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(conversation_id, title, last_message_id, last_message)| {
            ConversationWithLastMessage {
                conversation_id,
                title,
                last_message_id,
                last_message,
            }
        })
        .collect())
}

type ProductHitRow = (i64, String, String, Decimal, i64, i32);

async fn product_search_sqlx(pool: &PgPool, input: &CaseInputs) -> anyhow::Result<Vec<ProductHit>> {
    let rows: Vec<ProductHitRow> = sqlx::query_as(PRODUCT_SEARCH_SQL)
        .bind(compare::contains_pattern(&input.search_text))
        .bind(5_i64)
        .bind(0_i64)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, sku, name, price, seller_id, stock)| ProductHit {
            id,
            sku,
            name,
            price,
            seller_id,
            stock,
        })
        .collect())
}

type OrderLineRow = (i64, String, i32, i64, String, i64, i32, Decimal);

async fn order_lines_sqlx(pool: &PgPool, input: &CaseInputs) -> anyhow::Result<Vec<OrderLine>> {
    let rows: Vec<OrderLineRow> = sqlx::query_as(ORDER_LINES_SQL)
        .bind(input.order_id)
        .bind(input.order_buyer_id)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                order_id,
                status,
                position,
                product_id,
                product_name,
                seller_id,
                quantity,
                unit_price,
            )| {
                OrderLine {
                    order_id,
                    status,
                    position,
                    product_id,
                    product_name,
                    seller_id,
                    quantity,
                    unit_price,
                }
            },
        )
        .collect())
}

async fn spenders_sqlx(pool: &PgPool, input: &CaseInputs) -> anyhow::Result<Vec<Spender>> {
    // Built from the buyer count only (one placeholder each), never from values.
    let sql = sqlx::AssertSqlSafe(compare::spenders_sql(input.buyer_ids.len()));
    let mut query = sqlx::query_as::<_, (i64, String, i64, Decimal)>(sql)
        .bind("paid")
        .bind(2_i64);
    for buyer in &input.buyer_ids {
        query = query.bind(*buyer);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, username, order_count, total_spent)| Spender {
            user_id,
            username,
            order_count,
            total_spent,
        })
        .collect())
}

/// Both updates in one transaction that is rolled back, as the ORM side does.
async fn guarded_update_sqlx(pool: &PgPool, input: &CaseInputs) -> anyhow::Result<GuardedUpdate> {
    let mut txn = pool.begin().await?;
    let mut affected = [0_u64; 2];
    for (slot, quantity) in affected.iter_mut().zip([3_i32, 1_000_000]) {
        *slot = sqlx::query(GUARDED_UPDATE_SQL)
            .bind(quantity)
            .bind(input.product_in_stock)
            .execute(&mut *txn)
            .await?
            .rows_affected();
    }
    txn.rollback().await?;
    Ok(GuardedUpdate {
        affected_when_in_stock: affected[0],
        affected_when_short: affected[1],
    })
}

// ---------------------------------------------------------------------------------------------
// Timing.

/// A case's three sides.
struct Sides<FO, FT, FR> {
    orm: FO,
    tuned: FT,
    raw: FR,
}

/// Checks the three sides agree once, warms up, then interleaves `iterations` of each, rotating
/// which goes first so that no side always runs right after another.
async fn measure<T, FO, FutO, FT, FutT, FR, FutR>(
    case: &'static str,
    iterations: usize,
    warmup: usize,
    sides: Sides<FO, FT, FR>,
    rows: impl Fn(&T) -> usize,
) -> anyhow::Result<CaseFigures>
where
    T: PartialEq + std::fmt::Debug,
    FO: Fn() -> FutO,
    FutO: Future<Output = anyhow::Result<T>>,
    FT: Fn() -> FutT,
    FutT: Future<Output = anyhow::Result<T>>,
    FR: Fn() -> FutR,
    FutR: Future<Output = anyhow::Result<T>>,
{
    let Sides { orm, tuned, raw } = sides;
    let orm_result = orm().await.with_context(|| format!("{case}: ORM side"))?;
    let tuned_result = tuned()
        .await
        .with_context(|| format!("{case}: tuned ORM side"))?;
    let raw_result = raw().await.with_context(|| format!("{case}: raw side"))?;
    if orm_result != raw_result || tuned_result != raw_result {
        bail!(
            "{case}: the ORM sides and raw sqlx returned different results:\nORM: {orm_result:?}\ntuned: {tuned_result:?}\nraw: {raw_result:?}"
        );
    }
    for _ in 0..warmup {
        orm().await?;
        tuned().await?;
        raw().await?;
    }
    let mut samples = [
        Samples::with_capacity(iterations),
        Samples::with_capacity(iterations),
        Samples::with_capacity(iterations),
    ];
    for i in 0..iterations {
        for turn in 0..3 {
            let side = (i + turn) % 3;
            let started = Instant::now();
            match side {
                0 => {
                    std::hint::black_box(orm().await?);
                }
                1 => {
                    std::hint::black_box(tuned().await?);
                }
                _ => {
                    std::hint::black_box(raw().await?);
                }
            }
            samples[side].push(started.elapsed());
        }
    }
    let [orm, tuned, raw_sqlx] = samples.map(|samples| samples.summary());
    let figures = CaseFigures {
        case,
        iterations,
        orm,
        tuned,
        raw_sqlx,
        orm_over_raw_median: ratio(orm.p50_us as f64, raw_sqlx.p50_us as f64),
        tuned_over_raw_median: ratio(tuned.p50_us as f64, raw_sqlx.p50_us as f64),
        rows: rows(&orm_result),
    };
    Ok(figures)
}

/// Prints a case's line of progress and hands the figures on.
fn announced(figures: CaseFigures) -> CaseFigures {
    println!(
        "  {}: first ORM p50 {} µs, tuned p50 {} µs, raw p50 {} µs; over raw {:.2} and {:.2}",
        figures.case,
        figures.orm.p50_us,
        figures.tuned.p50_us,
        figures.raw_sqlx.p50_us,
        figures.orm_over_raw_median,
        figures.tuned_over_raw_median
    );
    figures
}

pub(crate) async fn run(
    db: &BenchDatabase,
    ids: &SeededIds,
    scale: &crate::scale::Scale,
) -> anyhow::Result<OrmVsRaw> {
    let shown = choose_inputs(db, ids).await?;
    let input = case_inputs(&shown);
    let orm_db: &DatabaseConnection = &db.plain;
    let pool = db.pool();
    let fast = scale.compare_iterations;
    let slow = scale.compare_iterations_slow;
    let warmup = scale.compare_warmup;
    let mut cases = Vec::new();

    cases.push(announced(
        measure(
            "last_messages",
            fast,
            warmup,
            Sides {
                orm: || async { Ok(compare::last_messages_orm(orm_db, &input).await?) },
                tuned: || async { Ok(compare::last_messages_tuned(orm_db, &input).await?) },
                raw: || last_messages_sqlx(pool, &input),
            },
            Vec::len,
        )
        .await?,
    ));
    // A user's conversations with their last message reads one MAX per conversation: slower.
    cases.push(announced(
        measure(
            "conversations_with_last_message",
            slow,
            warmup,
            Sides {
                orm: || async {
                    Ok(compare::conversations_with_last_message_orm(orm_db, &input).await?)
                },
                tuned: || async {
                    Ok(compare::conversations_with_last_message_tuned(orm_db, &input).await?)
                },
                raw: || conversations_sqlx(pool, &input),
            },
            Vec::len,
        )
        .await?,
    ));
    cases.push(announced(
        measure(
            "product_search",
            slow,
            warmup,
            Sides {
                orm: || async { Ok(compare::product_search_orm(orm_db, &input).await?) },
                tuned: || async { Ok(compare::product_search_orm(orm_db, &input).await?) },
                raw: || product_search_sqlx(pool, &input),
            },
            Vec::len,
        )
        .await?,
    ));
    cases.push(announced(
        measure(
            "order_lines",
            fast,
            warmup,
            Sides {
                orm: || async { Ok(compare::order_lines_orm(orm_db, &input).await?) },
                tuned: || async { Ok(compare::order_lines_tuned(orm_db, &input).await?) },
                raw: || order_lines_sqlx(pool, &input),
            },
            Vec::len,
        )
        .await?,
    ));
    cases.push(announced(
        measure(
            "spenders",
            fast,
            warmup,
            Sides {
                orm: || async { Ok(compare::spenders_orm(orm_db, &input).await?) },
                tuned: || async { Ok(compare::spenders_orm(orm_db, &input).await?) },
                raw: || spenders_sqlx(pool, &input),
            },
            Vec::len,
        )
        .await?,
    ));
    cases.push(announced(
        measure(
            "guarded_update",
            fast,
            warmup,
            Sides {
                orm: || async { Ok(compare::guarded_update_orm(orm_db, &input).await?) },
                tuned: || async { Ok(compare::guarded_update_orm(orm_db, &input).await?) },
                raw: || guarded_update_sqlx(pool, &input),
            },
            |_| 1,
        )
        .await?,
    ));
    Ok(OrmVsRaw {
        inputs: shown,
        cases,
    })
}

// ---------------------------------------------------------------------------------------------
// `mercado-bench orm-gap`: where the tuned ORM's time over raw sqlx goes.

/// How many rounds of [`BUILDS_PER_ROUND`] statement builds are timed; the median round counts.
const BUILD_ROUNDS: usize = 9;
const BUILDS_PER_ROUND: usize = 20_000;

/// One case's tuned ORM call split in two: building its statement, and running a statement
/// already built through SeaORM, each against raw sqlx.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GapFigures {
    pub(crate) case: &'static str,
    /// The tuned call as section 1 measures it: the statement is built on every call.
    pub(crate) tuned: LatencySummary,
    /// The same statement built once before the loop, then run through SeaORM on every call
    /// (`find_by_statement` on a clone of it) and decoded by the same `FromQueryResult`.
    pub(crate) built_once: LatencySummary,
    pub(crate) raw_sqlx: LatencySummary,
    pub(crate) tuned_over_raw_median: f64,
    pub(crate) built_once_over_raw_median: f64,
    /// Building the tuned statement alone (`Selector::into_statement`), in nanoseconds: the
    /// median over [`BUILD_ROUNDS`] rounds of the mean of [`BUILDS_PER_ROUND`] builds.
    pub(crate) build_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrmGap {
    pub(crate) inputs: InputsShown,
    pub(crate) iterations: usize,
    pub(crate) cases: Vec<GapFigures>,
}

fn build_ns(build: impl Fn() -> Statement) -> f64 {
    let rounds: Vec<f64> = (0..BUILD_ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BUILDS_PER_ROUND {
                std::hint::black_box(build());
            }
            started.elapsed().as_nanos() as f64 / BUILDS_PER_ROUND as f64
        })
        .collect();
    median(&rounds)
}

/// Reads section 1's three-way measurement as tuned (first side), built once (second) and raw.
fn split(figures: CaseFigures, build_ns: f64) -> GapFigures {
    let gap = GapFigures {
        case: figures.case,
        tuned: figures.orm,
        built_once: figures.tuned,
        raw_sqlx: figures.raw_sqlx,
        tuned_over_raw_median: figures.orm_over_raw_median,
        built_once_over_raw_median: figures.tuned_over_raw_median,
        build_ns,
    };
    println!(
        "  {}: tuned p50 {} µs, built once p50 {} µs, raw p50 {} µs; over raw {:.2} and {:.2}; \
         building alone {:.2} µs",
        gap.case,
        gap.tuned.p50_us,
        gap.built_once.p50_us,
        gap.raw_sqlx.p50_us,
        gap.tuned_over_raw_median,
        gap.built_once_over_raw_median,
        gap.build_ns / 1000.0
    );
    gap
}

/// One case of the gap: `select` is the tuned query, run as section 1 runs it (built on every
/// call), built once and run through SeaORM, and against `raw`; then built alone.
async fn gap_case<T, FR, FutR>(
    case: &'static str,
    iterations: usize,
    warmup: usize,
    db: &DatabaseConnection,
    select: impl Fn() -> Selector<SelectModel<T>>,
    raw: FR,
) -> anyhow::Result<GapFigures>
where
    T: FromQueryResult + PartialEq + std::fmt::Debug + Send + Sync,
    FR: Fn() -> FutR,
    FutR: Future<Output = anyhow::Result<Vec<T>>>,
{
    let backend = db.get_database_backend();
    let built_once = select().into_statement(backend);
    let figures = measure(
        case,
        iterations,
        warmup,
        Sides {
            orm: || async { Ok(select().all(db).await?) },
            tuned: || async { Ok(T::find_by_statement(built_once.clone()).all(db).await?) },
            raw,
        },
        Vec::len,
    )
    .await?;
    Ok(split(
        figures,
        build_ns(|| select().into_statement(backend)),
    ))
}

/// The two cases closest to the 1.10× target in the full runs, with the statement built on
/// every call, built once, and not built at all (raw sqlx), interleaved as in section 1; and the
/// building alone.
pub(crate) async fn gap(
    db: &BenchDatabase,
    ids: &SeededIds,
    iterations: usize,
    warmup: usize,
) -> anyhow::Result<OrmGap> {
    let shown = choose_inputs(db, ids).await?;
    let input = case_inputs(&shown);
    let pool = db.pool();
    let cases = vec![
        gap_case(
            "last_messages",
            iterations,
            warmup,
            &db.plain,
            || compare::last_messages_tuned_select(&input),
            || last_messages_sqlx(pool, &input),
        )
        .await?,
        gap_case(
            "order_lines",
            iterations,
            warmup,
            &db.plain,
            || compare::order_lines_tuned_select(&input),
            || order_lines_sqlx(pool, &input),
        )
        .await?,
    ];
    Ok(OrmGap {
        inputs: shown,
        iterations,
        cases,
    })
}
