//! Filling a database with a data set of a chosen size, by the fastest correct path: chunked
//! multi-row INSERTs under the bind-parameter limit ([`service::bulk`]) for every table, and
//! `COPY … FROM STDIN` for the messages on PostgreSQL, where they are most of the rows.
//!
//! Every seeded row carries a run tag (`seed-<tag>-…` usernames, `SEED-<tag>-…` SKUs,
//! `Seed <tag> #…` titles), so a seed can be added to a database that already holds data and
//! the generated ids are found again by that tag, with one query per table. Each chunk is its
//! own transaction: an interrupted seed keeps the chunks it finished.

use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use entity::{accounts, conversation_participants, conversations, inventory, products, users};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use service::{
    ServiceError,
    bulk::{NewMessageRow, copy_messages, insert_chunked, insert_messages},
    db::begin_write,
};

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

/// Rows generated and written per chunk: large enough to amortise round trips, small enough to
/// keep the seed's memory flat however many rows are asked for.
const CHUNK_ROWS: u64 = 20_000;
/// Every seeded account starts with this much money.
const OPENING_BALANCE: Decimal = Decimal::from_parts(100_000, 0, 0, false, 2);

/// Seeds `sizes` rows into `db`, calling `progress` after each chunk. `seed_value` makes the
/// generated content reproducible (the run tag stays unique).
pub async fn seed(
    db: &DatabaseConnection,
    sizes: SeedSizes,
    seed_value: u64,
    mut progress: impl FnMut(SeedProgress),
) -> Result<SeedReport, ServiceError> {
    check_sizes(&sizes)?;
    let started = Instant::now();
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut rng = StdRng::seed_from_u64(seed_value);
    let mut tables = Vec::new();

    let clock = Instant::now();
    let user_ids = seed_users(db, &tag, sizes.users, &mut progress).await?;
    tables.push(TableReport {
        table: "users",
        rows: sizes.users,
        elapsed: clock.elapsed(),
    });

    let clock = Instant::now();
    let accounts = user_ids.iter().map(|&user_id| accounts::ActiveModel {
        user_id: Set(user_id),
        balance: Set(OPENING_BALANCE),
        updated_at: Set(Utc::now().trunc_subsecs(6).into()),
    });
    let rows = write_chunks(db, "accounts", accounts, sizes.users, &mut progress).await?;
    tables.push(TableReport {
        table: "accounts",
        rows,
        elapsed: clock.elapsed(),
    });

    let clock = Instant::now();
    let product_ids =
        seed_products(db, &tag, sizes.products, &user_ids, &mut rng, &mut progress).await?;
    let stock: Vec<i32> = (0..product_ids.len())
        .map(|_| rng.random_range(10..=1_000))
        .collect();
    let inventory = product_ids
        .iter()
        .zip(stock)
        .map(|(&product_id, quantity)| inventory::ActiveModel {
            product_id: Set(product_id),
            quantity: Set(quantity),
        });
    write_chunks(db, "inventory", inventory, sizes.products, &mut progress).await?;
    tables.push(TableReport {
        table: "products + inventory",
        rows: sizes.products * 2,
        elapsed: clock.elapsed(),
    });

    let clock = Instant::now();
    let conversations = seed_conversations(
        db,
        &tag,
        sizes.conversations,
        &user_ids,
        &product_ids,
        &mut rng,
        &mut progress,
    )
    .await?;
    tables.push(TableReport {
        table: "conversations + participants",
        rows: sizes.conversations
            + conversations
                .iter()
                .map(|c| c.members.len() as u64)
                .sum::<u64>(),
        elapsed: clock.elapsed(),
    });

    let clock = Instant::now();
    let rows = seed_messages(db, sizes.messages, &conversations, &mut rng, &mut progress).await?;
    tables.push(TableReport {
        table: "messages",
        rows,
        elapsed: clock.elapsed(),
    });

    Ok(SeedReport {
        tag,
        tables,
        elapsed: started.elapsed(),
    })
}

fn check_sizes(sizes: &SeedSizes) -> Result<(), ServiceError> {
    let needs_users = sizes.products > 0 || sizes.conversations > 0;
    if needs_users && sizes.users == 0 {
        return Err(ServiceError::validation(
            "users",
            "products and conversations need users",
        ));
    }
    if sizes.messages > 0 && sizes.conversations == 0 {
        return Err(ServiceError::validation(
            "conversations",
            "messages need conversations",
        ));
    }
    Ok(())
}

/// Inserts `models` in transactions of [`CHUNK_ROWS`], each split under the bind limit.
async fn write_chunks<A>(
    db: &DatabaseConnection,
    table: &'static str,
    models: impl Iterator<Item = A>,
    total: u64,
    progress: &mut impl FnMut(SeedProgress),
) -> Result<u64, ServiceError>
where
    A: sea_orm::ActiveModelTrait + Send,
{
    let mut models = models.peekable();
    let mut done = 0;
    while models.peek().is_some() {
        let chunk: Vec<A> = models.by_ref().take(CHUNK_ROWS as usize).collect();
        let txn = begin_write(db).await?;
        done += insert_chunked(&txn, chunk).await?;
        txn.commit().await?;
        progress(SeedProgress { table, done, total });
    }
    Ok(done)
}

async fn seed_users(
    db: &DatabaseConnection,
    tag: &str,
    count: u64,
    progress: &mut impl FnMut(SeedProgress),
) -> Result<Vec<i64>, ServiceError> {
    let prefix = format!("seed-{tag}-");
    let models = (0..count).map(|i| {
        let username = format!("{prefix}{i}");
        users::ActiveModel {
            username_canonical: Set(username.clone()),
            email: Set(format!("{username}@seed.example")),
            email_canonical: Set(format!("{username}@seed.example")),
            display_name: Set(format!("Seed user {i}")),
            username: Set(username),
            created_at: Set(Utc::now().trunc_subsecs(6).into()),
            ..Default::default()
        }
    });
    write_chunks(db, "users", models, count, progress).await?;
    // The tag holds no LIKE wildcard (hex digits and dashes), so the prefix matches literally.
    Ok(users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::UsernameCanonical.starts_with(&prefix))
        .order_by_asc(users::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

async fn seed_products(
    db: &DatabaseConnection,
    tag: &str,
    count: u64,
    sellers: &[i64],
    rng: &mut StdRng,
    progress: &mut impl FnMut(SeedProgress),
) -> Result<Vec<i64>, ServiceError> {
    let prefix = format!("SEED-{tag}-");
    let rows: Vec<(i64, Decimal)> = (0..count)
        .map(|_| {
            (
                pick(rng, sellers),
                Decimal::new(rng.random_range(100..=50_000), 2),
            )
        })
        .collect();
    let models =
        rows.into_iter()
            .enumerate()
            .map(|(i, (seller_id, price))| products::ActiveModel {
                sku: Set(format!("{prefix}{i}")),
                name: Set(format!("{} {i}", PRODUCT_NAMES[i % PRODUCT_NAMES.len()])),
                price: Set(price),
                seller_id: Set(seller_id),
                created_at: Set(Utc::now().trunc_subsecs(6).into()),
                ..Default::default()
            });
    write_chunks(db, "products", models, count, progress).await?;
    Ok(products::Entity::find()
        .select_only()
        .column(products::Column::Id)
        .filter(products::Column::Sku.starts_with(&prefix))
        .order_by_asc(products::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

/// A seeded conversation and the users who may post in it.
struct SeededConversation {
    id: i64,
    members: Vec<i64>,
}

async fn seed_conversations(
    db: &DatabaseConnection,
    tag: &str,
    count: u64,
    users: &[i64],
    products: &[i64],
    rng: &mut StdRng,
    progress: &mut impl FnMut(SeedProgress),
) -> Result<Vec<SeededConversation>, ServiceError> {
    let prefix = format!("Seed {tag} #");
    let members: Vec<Vec<i64>> = (0..count)
        .map(|_| {
            let creator = pick(rng, users);
            let other = pick(rng, users);
            if other == creator {
                vec![creator]
            } else {
                vec![creator, other]
            }
        })
        .collect();
    let about: Vec<Option<i64>> = (0..count)
        .map(|_| (!products.is_empty() && rng.random_bool(0.3)).then(|| pick(rng, products)))
        .collect();
    let models = members
        .iter()
        .zip(&about)
        .enumerate()
        .map(|(i, (members, product))| conversations::ActiveModel {
            title: Set(format!("{prefix}{i}")),
            product_id: Set(*product),
            created_by: Set(members[0]),
            created_at: Set(Utc::now().trunc_subsecs(6).into()),
            ..Default::default()
        });
    write_chunks(db, "conversations", models, count, progress).await?;
    // Inserted in order, so ascending ids follow the generated order.
    let ids: Vec<i64> = conversations::Entity::find()
        .select_only()
        .column(conversations::Column::Id)
        .filter(conversations::Column::Title.starts_with(&prefix))
        .order_by_asc(conversations::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let seeded: Vec<SeededConversation> = ids
        .into_iter()
        .zip(members)
        .map(|(id, members)| SeededConversation { id, members })
        .collect();
    let participants: u64 = seeded.iter().map(|c| c.members.len() as u64).sum();
    let models = seeded.iter().flat_map(|conversation| {
        conversation
            .members
            .iter()
            .map(|&user_id| conversation_participants::ActiveModel {
                conversation_id: Set(conversation.id),
                user_id: Set(user_id),
                joined_at: Set(Utc::now().trunc_subsecs(6).into()),
            })
    });
    write_chunks(
        db,
        "conversation_participants",
        models,
        participants,
        progress,
    )
    .await?;
    Ok(seeded)
}

async fn seed_messages(
    db: &DatabaseConnection,
    count: u64,
    conversations: &[SeededConversation],
    rng: &mut StdRng,
    progress: &mut impl FnMut(SeedProgress),
) -> Result<u64, ServiceError> {
    let mut done = 0;
    while done < count {
        let size = CHUNK_ROWS.min(count - done);
        let rows: Vec<NewMessageRow> = (0..size)
            .map(|_| {
                let conversation = &conversations[rng.random_range(0..conversations.len())];
                NewMessageRow {
                    conversation_id: conversation.id,
                    sender_id: pick(rng, &conversation.members),
                    reply_to_id: None,
                    body: sentence(rng),
                    created_at: Utc::now().trunc_subsecs(6),
                }
            })
            .collect();
        done += match db.get_database_backend() {
            DbBackend::Postgres => copy_messages(db.get_postgres_connection_pool(), &rows).await?,
            _ => insert_messages(db, &rows).await?,
        };
        progress(SeedProgress {
            table: "messages",
            done,
            total: count,
        });
    }
    Ok(done)
}

/// One element of a non-empty slice, chosen at random (callers check non-emptiness first).
fn pick(rng: &mut StdRng, from: &[i64]) -> i64 {
    from[rng.random_range(0..from.len())]
}

const PRODUCT_NAMES: &[&str] = &[
    "Lamp", "Kettle", "Bicycle", "Guitar", "Backpack", "Chair", "Camera", "Teapot", "Clock",
    "Notebook",
];

const WORDS: &[&str] = &[
    "hello",
    "is",
    "this",
    "still",
    "available",
    "price",
    "shipping",
    "tomorrow",
    "thanks",
    "great",
    "how",
    "about",
    "deal",
    "pick",
    "up",
    "today",
    "can",
    "you",
    "send",
    "photo",
];

/// A short message body of 3 to 15 words.
fn sentence(rng: &mut StdRng) -> String {
    let words = rng.random_range(3..=15);
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}
