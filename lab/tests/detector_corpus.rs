//! The N+1 detector's corpus: realistic SeaORM code, each scenario with the exact findings it
//! must produce (kind, statement, count, call site), run on every backend, in debug and release
//! builds. The table below is the detector's specification: what it calls an N+1, a duplicate,
//! or nothing at all, and why. Each scenario arranges its rows outside the scope (the fixture,
//! or inside `unobserved`), so only the code under test is counted.

// In a test, a broken expectation is a failed test: unwrap and expect say so most directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{future::Future, pin::Pin};

use entity::{accounts, conversation_participants, conversations, messages, users};
use futures::future::join_all;
use mercado_lab::seed::{self, SeededIds};
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    ExprTrait, LoaderTrait, ModelTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use service::{ServiceError, export, retry};
use sql_observe::{self as observe, FindingKind, ObserveConfig, Scope, ScopeReport};

type Outcome = anyhow::Result<()>;
type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// What a scenario must produce: one line per finding, in order.
#[derive(Debug, Clone, Copy)]
struct Expect {
    kind: FindingKind,
    /// A piece of the finding's fingerprint.
    statement: &'static str,
    count: usize,
    /// The function of ours that issued it (a path in this test file).
    call_site: &'static str,
    /// The function that called it, where the two differ.
    called_from: Option<&'static str>,
}

const fn n_plus_one(statement: &'static str, count: usize, call_site: &'static str) -> Expect {
    Expect {
        kind: FindingKind::NPlusOne,
        statement,
        count,
        call_site,
        called_from: None,
    }
}

const fn duplicate(statement: &'static str, count: usize, call_site: &'static str) -> Expect {
    Expect {
        kind: FindingKind::Duplicate,
        statement,
        count,
        call_site,
        called_from: None,
    }
}

const fn called_from(mut expect: Expect, caller: &'static str) -> Expect {
    expect.called_from = Some(caller);
    expect
}

struct Scenario {
    name: &'static str,
    why: &'static str,
    run: for<'a> fn(&'a DatabaseConnection, &'a Fixture) -> ScenarioFuture<'a>,
    expect: &'static [Expect],
}

/// The demo data set, and one conversation of its own with ten messages in a reply chain.
struct Fixture {
    data: SeededIds,
    conversation: i64,
    /// The conversation's ten messages, in id order; each replies to the one before.
    messages: Vec<i64>,
}

const MESSAGES: &str = "FROM \"messages\"";
const USERS_BY_ID: &str = "\"users\".\"id\" = ?";

macro_rules! scenario {
    ($name:ident, $why:literal, [$($expect:expr),* $(,)?]) => {
        Scenario {
            name: stringify!($name),
            why: $why,
            run: |db, fixture| Box::pin($name(db, fixture)),
            expect: {
                const EXPECTED: &[Expect] = &[$($expect),*];
                EXPECTED
            },
        }
    };
}

fn corpus() -> Vec<Scenario> {
    vec![
        // --- What the detector calls an N+1 ---
        scenario!(
            lazy_find_related_per_row,
            "one query per parent row: the classic N+1",
            [n_plus_one(MESSAGES, 6, "lazy_find_related_per_row")]
        ),
        scenario!(
            find_by_id_per_row,
            "a primary-key lookup per id",
            [n_plus_one(USERS_BY_ID, 6, "find_by_id_per_row")]
        ),
        scenario!(
            count_per_parent,
            "a COUNT per parent instead of one GROUP BY",
            [n_plus_one("COUNT(", 6, "count_per_parent")]
        ),
        scenario!(
            insert_per_row,
            "an INSERT per row instead of insert_many",
            [n_plus_one("INSERT INTO \"messages\"", 4, "insert_per_row")]
        ),
        scenario!(
            update_per_row,
            "an UPDATE per row instead of update_many",
            [n_plus_one("UPDATE \"users\"", 6, "update_per_row")]
        ),
        scenario!(
            delete_per_row,
            "a DELETE per row instead of delete_many",
            [n_plus_one("DELETE FROM \"messages\"", 4, "delete_per_row")]
        ),
        scenario!(
            nested_loops,
            "N conversations × M participants: both levels repeat",
            [
                n_plus_one("FROM \"conversation_participants\"", 6, "nested_loops"),
                n_plus_one(USERS_BY_ID, 12, "nested_loops"),
                // Each user takes part in two conversations, so each is looked up twice.
                duplicate(USERS_BY_ID, 12, "nested_loops")
            ]
        ),
        scenario!(
            loop_inside_a_transaction,
            "a transaction does not make a loop one statement",
            [n_plus_one(USERS_BY_ID, 6, "loop_inside_a_transaction")]
        ),
        scenario!(
            join_all_of_lookups,
            "concurrent lookups are still one per row",
            [n_plus_one(USERS_BY_ID, 6, "join_all_of_lookups")]
        ),
        scenario!(
            spawned_lookup_per_row,
            "tasks spawned per row with sql_observe::spawn",
            [called_from(
                n_plus_one(USERS_BY_ID, 6, "spawned_lookup"),
                "spawned_lookup_per_row"
            )]
        ),
        scenario!(
            join_set_lookup_per_row,
            "a JoinSet of tasks carried with in_current_scope",
            [called_from(
                n_plus_one(USERS_BY_ID, 6, "spawned_lookup"),
                "join_set_lookup_per_row"
            )]
        ),
        scenario!(
            helper_called_per_row,
            "the statement is built in a helper; the loop is its caller",
            [called_from(
                n_plus_one(USERS_BY_ID, 6, "user_by_id"),
                "helper_called_per_row"
            )]
        ),
        scenario!(
            select_in_per_row,
            "a select-in issued once per row is a batch per row",
            [n_plus_one(
                "\"users\".\"id\" IN (...)",
                3,
                "select_in_per_row"
            )]
        ),
        scenario!(
            recursion_up_a_reply_chain,
            "a recursive walk is a loop too (recursive calls counted)",
            [n_plus_one("\"messages\".\"id\" = ?", 9, "reply_chain_from")]
        ),
        scenario!(
            keyset_walk_one_row_at_a_time,
            "pages of one row: as many statements as rows",
            [n_plus_one(MESSAGES, 11, "keyset_walk_one_row_at_a_time")]
        ),
        scenario!(
            ordered_lookup_after_each_row,
            "full pages after a creeping cursor: a window per row, not a walk",
            [n_plus_one(MESSAGES, 5, "ordered_lookup_after_each_row")]
        ),
        scenario!(
            first_page_per_parent,
            "keyset-shaped, but a different conversation each time",
            [n_plus_one(MESSAGES, 6, "first_page_per_parent")]
        ),
        scenario!(
            loop_in_the_last_attempt_of_a_retry,
            "a retry never doubles the count of the loop it reruns",
            [n_plus_one(USERS_BY_ID, 6, "lookups_that_fail_once")]
        ),
        // --- What it calls a duplicate ---
        scenario!(
            same_lookup_in_a_loop,
            "the same values again and again",
            [duplicate(USERS_BY_ID, 3, "same_lookup_in_a_loop")]
        ),
        scenario!(
            same_lookup_on_two_lines,
            "the same read on two lines: keep the first result",
            [duplicate(USERS_BY_ID, 2, "same_lookup_on_two_lines")]
        ),
        scenario!(
            same_read_around_a_write_elsewhere,
            "a write to another table cannot change the answer",
            [called_from(
                duplicate("FROM \"accounts\"", 2, "balance_of"),
                "same_read_around_a_write_elsewhere"
            )]
        ),
        // --- What it deliberately leaves alone ---
        scenario!(
            select_in_with_load_many,
            "LoaderTrait::load_many: one IN list",
            []
        ),
        scenario!(joined_find_with_related, "one JOIN", []),
        scenario!(
            sender_and_recipient_on_two_lines,
            "one lookup on each of two lines is two places, not a loop",
            []
        ),
        scenario!(
            one_helper_from_two_lines,
            "a helper called once from each of two lines",
            []
        ),
        scenario!(
            keyset_walk_until_a_short_page,
            "one result set read in keyset batches",
            []
        ),
        scenario!(mercados_export, "service::export's keyset batches", []),
        scenario!(
            offset_pages_of_one_query,
            "paginate + fetch_page: one query, three pages",
            []
        ),
        scenario!(cursor_by_pages, "SeaORM's cursor_by: keyset pages", []),
        scenario!(
            chunked_insert_many,
            "insert_many in equal chunks: one bulk write",
            []
        ),
        scenario!(
            retried_transaction,
            "a transaction run again by retry::with_retry",
            []
        ),
        scenario!(
            same_read_around_a_write_to_its_table,
            "the answer may have changed",
            []
        ),
        scenario!(
            same_write_twice,
            "two writes are two effects, never a duplicate",
            []
        ),
        scenario!(
            nested_scope_called_from_two_lines,
            "an inner scope run from two lines",
            []
        ),
        // --- What it cannot see (asserted as statement counts below) ---
        scenario!(
            plain_tokio_spawn_is_invisible,
            "tokio::spawn without in_current_scope",
            []
        ),
        scenario!(
            a_task_outliving_its_scope_is_not_counted,
            "statements after the scope ended",
            []
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The scenarios. Each is the code a reader might write; the table above says what it is.

async fn lazy_find_related_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let all = conversations::Entity::find()
        .filter(conversations::Column::Id.is_in(f.data.conversations.clone()))
        .all(db)
        .await?;
    for conversation in &all {
        conversation.find_related(messages::Entity).all(db).await?;
    }
    Ok(())
}

async fn find_by_id_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for id in &f.data.users {
        users::Entity::find_by_id(*id).one(db).await?;
    }
    Ok(())
}

async fn count_per_parent(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for id in &f.data.conversations {
        messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(*id))
            .count(db)
            .await?;
    }
    Ok(())
}

fn message(conversation: i64, sender: i64, body: String) -> messages::ActiveModel {
    messages::ActiveModel {
        conversation_id: Set(conversation),
        sender_id: Set(sender),
        body: Set(body),
        created_at: Set(chrono::Utc::now().fixed_offset()),
        ..Default::default()
    }
}

async fn insert_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    for i in 0..4 {
        messages::Entity::insert(message(f.conversation, f.data.users[0], format!("hi {i}")))
            .exec(&txn)
            .await?;
    }
    txn.rollback().await?;
    Ok(())
}

async fn update_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    for id in &f.data.users {
        users::Entity::update_many()
            .col_expr(
                users::Column::DisplayName,
                sea_orm::sea_query::Expr::value("x"),
            )
            .filter(users::Column::Id.eq(*id))
            .exec(&txn)
            .await?;
    }
    txn.rollback().await?;
    Ok(())
}

async fn delete_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    // The newest first: every message replies to the one before it.
    for id in f.messages.iter().rev().take(4) {
        messages::Entity::delete_by_id(*id).exec(&txn).await?;
    }
    txn.rollback().await?;
    Ok(())
}

async fn nested_loops(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for conversation in &f.data.conversations {
        let participants = conversation_participants::Entity::find()
            .filter(conversation_participants::Column::ConversationId.eq(*conversation))
            .all(db)
            .await?;
        for participant in participants {
            users::Entity::find_by_id(participant.user_id)
                .one(db)
                .await?;
        }
    }
    Ok(())
}

async fn loop_inside_a_transaction(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    for id in &f.data.users {
        users::Entity::find_by_id(*id).one(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn join_all_of_lookups(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let lookups = f
        .data
        .users
        .iter()
        .map(|id| users::Entity::find_by_id(*id).one(db));
    for found in join_all(lookups).await {
        found?;
    }
    Ok(())
}

async fn spawned_lookup(db: DatabaseConnection, id: i64) -> Result<(), DbErr> {
    users::Entity::find_by_id(id).one(&db).await?;
    Ok(())
}

async fn spawned_lookup_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let handles: Vec<_> = f
        .data
        .users
        .iter()
        .map(|id| observe::spawn(spawned_lookup(db.clone(), *id)))
        .collect();
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

async fn join_set_lookup_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for id in &f.data.users {
        tasks.spawn(observe::in_current_scope(spawned_lookup(db.clone(), *id)));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

async fn user_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find_by_id(id).one(db).await
}

async fn helper_called_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for id in &f.data.users {
        user_by_id(db, *id).await?;
    }
    Ok(())
}

async fn select_in_per_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    // Each "row" brings a key list of its own size: a select-in per row, not chunks of one set.
    for size in [2, 3, 5] {
        users::Entity::find()
            .filter(users::Column::Id.is_in(f.data.users[..size].to_vec()))
            .all(db)
            .await?;
    }
    Ok(())
}

fn reply_chain_from<'a>(
    db: &'a DatabaseConnection,
    id: i64,
) -> Pin<Box<dyn Future<Output = Result<usize, DbErr>> + Send + 'a>> {
    Box::pin(async move {
        let found = messages::Entity::find_by_id(id).one(db).await?;
        match found.and_then(|m| m.reply_to_id) {
            Some(parent) => Ok(1 + reply_chain_from(db, parent).await?),
            None => Ok(1),
        }
    })
}

async fn recursion_up_a_reply_chain(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let depth = reply_chain_from(db, f.messages[9]).await?;
    assert_eq!(depth, 10);
    Ok(())
}

fn after_in_conversation(conversation: i64, after: i64) -> sea_orm::Select<messages::Entity> {
    messages::Entity::find()
        .filter(messages::Column::ConversationId.eq(conversation))
        .filter(messages::Column::Id.gt(after))
        .order_by_asc(messages::Column::Id)
}

async fn keyset_walk_one_row_at_a_time(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut last = 0;
    while let Some(next) = after_in_conversation(f.conversation, last)
        .limit(1)
        .one(db)
        .await?
    {
        last = next.id;
    }
    Ok(())
}

async fn ordered_lookup_after_each_row(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    // The three messages after each of the first five: every page is full, the cursor creeps.
    for id in &f.messages[..5] {
        let window = after_in_conversation(f.conversation, *id)
            .limit(3)
            .all(db)
            .await?;
        assert_eq!(window.len(), 3);
    }
    Ok(())
}

async fn first_page_per_parent(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for conversation in &f.data.conversations {
        after_in_conversation(*conversation, 0)
            .limit(2)
            .all(db)
            .await?;
    }
    Ok(())
}

async fn lookups_that_fail_once(
    db: &DatabaseConnection,
    f: &Fixture,
    attempts: &std::sync::atomic::AtomicU32,
) -> Result<(), ServiceError> {
    for id in &f.data.users {
        users::Entity::find_by_id(*id).one(db).await?;
    }
    if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        return Err(ServiceError::Contended(DbErr::Custom(
            "deadlock, on purpose".into(),
        )));
    }
    Ok(())
}

fn retry_at_once() -> retry::RetryPolicy {
    retry::RetryPolicy {
        base_delay: std::time::Duration::ZERO,
        ..retry::RetryPolicy::default()
    }
}

async fn loop_in_the_last_attempt_of_a_retry(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    retry::with_retry(retry_at_once(), || lookups_that_fail_once(db, f, &attempts)).await?;
    assert_eq!(attempts.into_inner(), 2);
    Ok(())
}

async fn same_lookup_in_a_loop(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    for _ in 0..3 {
        users::Entity::find_by_id(f.data.users[0]).one(db).await?;
    }
    Ok(())
}

async fn same_lookup_on_two_lines(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let buyer = users::Entity::find_by_id(f.data.users[0]).one(db).await?;
    let again = users::Entity::find_by_id(f.data.users[0]).one(db).await?;
    assert_eq!(buyer, again);
    Ok(())
}

async fn balance_of(
    db: &impl ConnectionTrait,
    user: i64,
) -> Result<Option<accounts::Model>, DbErr> {
    accounts::Entity::find_by_id(user).one(db).await
}

async fn same_read_around_a_write_elsewhere(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    let before = balance_of(&txn, f.data.users[0]).await?;
    users::Entity::update_many()
        .col_expr(
            users::Column::DisplayName,
            sea_orm::sea_query::Expr::value("y"),
        )
        .filter(users::Column::Id.eq(f.data.users[0]))
        .exec(&txn)
        .await?;
    let after = balance_of(&txn, f.data.users[0]).await?;
    assert_eq!(before, after);
    txn.rollback().await?;
    Ok(())
}

async fn select_in_with_load_many(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let all = conversations::Entity::find()
        .filter(conversations::Column::Id.is_in(f.data.conversations.clone()))
        .all(db)
        .await?;
    all.load_many(messages::Entity, db).await?;
    Ok(())
}

async fn joined_find_with_related(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    conversations::Entity::find()
        .filter(conversations::Column::Id.is_in(f.data.conversations.clone()))
        .find_with_related(messages::Entity)
        .all(db)
        .await?;
    Ok(())
}

async fn sender_and_recipient_on_two_lines(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let sender = accounts::Entity::find_by_id(f.data.users[0])
        .one(db)
        .await?;
    let recipient = accounts::Entity::find_by_id(f.data.users[1])
        .one(db)
        .await?;
    assert!(sender.is_some() && recipient.is_some());
    Ok(())
}

async fn one_helper_from_two_lines(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let seller = user_by_id(db, f.data.users[0]).await?;
    let buyer = user_by_id(db, f.data.users[1]).await?;
    assert_ne!(seller, buyer);
    Ok(())
}

async fn keyset_walk_until_a_short_page(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut last = 0;
    let mut read = 0;
    loop {
        let batch = after_in_conversation(f.conversation, last)
            .limit(4)
            .all(db)
            .await?;
        read += batch.len();
        match batch.last() {
            Some(message) if batch.len() == 4 => last = message.id,
            _ => break,
        }
    }
    assert_eq!(read, 10);
    Ok(())
}

async fn mercados_export(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut out = Vec::new();
    let written = export::export_messages_in_batches(
        db,
        export::ExportScope::Conversation(f.conversation),
        &mut out,
        std::num::NonZeroU64::new(3).unwrap(),
    )
    .await?;
    assert_eq!(written, 10);
    Ok(())
}

async fn offset_pages_of_one_query(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let paginator = messages::Entity::find()
        .filter(messages::Column::ConversationId.eq(f.conversation))
        .order_by_asc(messages::Column::Id)
        .paginate(db, 4);
    for page in 0..3 {
        paginator.fetch_page(page).await?;
    }
    Ok(())
}

async fn cursor_by_pages(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut last = 0;
    loop {
        let page = messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(f.conversation))
            .cursor_by(messages::Column::Id)
            .after(last)
            .first(4)
            .all(db)
            .await?;
        match page.last() {
            Some(message) if page.len() == 4 => last = message.id,
            _ => break,
        }
    }
    Ok(())
}

async fn chunked_insert_many(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    let rows: Vec<_> = (0..10)
        .map(|i| message(f.conversation, f.data.users[0], format!("bulk {i}")))
        .collect();
    for chunk in rows.chunks(4) {
        messages::Entity::insert_many(chunk.to_vec())
            .exec(&txn)
            .await?;
    }
    txn.rollback().await?;
    Ok(())
}

async fn read_then_fail_once(
    db: &DatabaseConnection,
    f: &Fixture,
    attempts: &std::sync::atomic::AtomicU32,
) -> Result<(), ServiceError> {
    let txn = db.begin().await?;
    users::Entity::find_by_id(f.data.users[0]).one(&txn).await?;
    balance_of(&txn, f.data.users[0]).await?;
    if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2 {
        txn.rollback().await?;
        return Err(ServiceError::Contended(DbErr::Custom(
            "deadlock, on purpose".into(),
        )));
    }
    txn.commit().await?;
    Ok(())
}

async fn retried_transaction(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    retry::with_retry(retry_at_once(), || read_then_fail_once(db, f, &attempts)).await?;
    assert_eq!(attempts.into_inner(), 3);
    Ok(())
}

async fn same_read_around_a_write_to_its_table(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    let before = balance_of(&txn, f.data.users[0]).await?;
    accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Balance,
            sea_orm::sea_query::Expr::col(accounts::Column::Balance).add(1),
        )
        .filter(accounts::Column::UserId.eq(f.data.users[0]))
        .exec(&txn)
        .await?;
    let after = balance_of(&txn, f.data.users[0]).await?;
    assert_ne!(before, after);
    txn.rollback().await?;
    Ok(())
}

async fn same_write_twice(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let txn = db.begin().await?;
    for _ in 0..2 {
        accounts::Entity::update_many()
            .col_expr(
                accounts::Column::Balance,
                sea_orm::sea_query::Expr::col(accounts::Column::Balance).add(1),
            )
            .filter(accounts::Column::UserId.eq(f.data.users[0]))
            .exec(&txn)
            .await?;
    }
    txn.rollback().await?;
    Ok(())
}

async fn inner_unit(db: &DatabaseConnection, id: i64) -> Result<ScopeReport, DbErr> {
    let (found, report) = observe::scope(Scope::command("inner"), user_by_id(db, id)).await;
    found?;
    Ok(report)
}

async fn nested_scope_called_from_two_lines(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let first = inner_unit(db, f.data.users[0]).await?;
    let second = inner_unit(db, f.data.users[1]).await?;
    assert_eq!((first.statement_count(), second.statement_count()), (1, 1));
    Ok(())
}

async fn plain_tokio_spawn_is_invisible(db: &DatabaseConnection, f: &Fixture) -> Outcome {
    let mut handles = Vec::new();
    for id in &f.data.users {
        handles.push(tokio::spawn(spawned_lookup(db.clone(), *id)));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

async fn a_task_outliving_its_scope_is_not_counted(
    db: &DatabaseConnection,
    f: &Fixture,
) -> Outcome {
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let late = observe::spawn({
        let db = db.clone();
        let id = f.data.users[0];
        async move {
            wait.await.ok();
            spawned_lookup(db, id).await
        }
    });
    // Handed out of the scope: the test below releases it after the scope has ended.
    LATE.with(|slot| *slot.borrow_mut() = Some((release, late)));
    Ok(())
}

type LateTask = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), DbErr>>,
);

thread_local! {
    static LATE: std::cell::RefCell<Option<LateTask>> = const { std::cell::RefCell::new(None) };
}

// ---------------------------------------------------------------------------------------------
// The harness.

async fn fixture(db: &DatabaseConnection) -> anyhow::Result<Fixture> {
    let data = seed::demo(db, 6).await?;
    let conversation = data.conversations[0];
    let mut messages_ids = Vec::new();
    let mut reply_to = None;
    for i in 0..10 {
        let mut row = message(conversation, data.users[0], format!("chain {i}"));
        row.reply_to_id = Set(reply_to);
        let inserted = messages::Entity::insert(row).exec(db).await?;
        reply_to = Some(inserted.last_insert_id);
        messages_ids.push(inserted.last_insert_id);
    }
    // The demo data set already has messages in that conversation: the walks read them too,
    // so the fixture's conversation is made to hold exactly its ten.
    messages::Entity::delete_many()
        .filter(messages::Column::ConversationId.eq(conversation))
        .filter(messages::Column::Id.is_not_in(messages_ids.clone()))
        .exec(db)
        .await?;
    Ok(Fixture {
        data,
        conversation,
        messages: messages_ids,
    })
}

fn configured() -> ObserveConfig {
    ["detector_corpus", "mercado_lab", "service"]
        .into_iter()
        .fold(ObserveConfig::default(), ObserveConfig::with_own_crate)
}

/// `detector_corpus::name (lab/tests/detector_corpus.rs:12)` → `name`.
fn function_of(site: &str) -> &str {
    let path = site.split(" (").next().unwrap_or(site);
    path.rsplit("::").next().unwrap_or(path)
}

fn describe(report: &ScopeReport) -> String {
    let mut out = String::new();
    for finding in &report.findings {
        out.push_str(&format!("  - {finding}\n"));
    }
    for statement in &report.statements {
        out.push_str(&format!("    {}. {statement}\n", statement.sequence));
    }
    out
}

async fn run_corpus(db: &TestDb) -> anyhow::Result<()> {
    let mut conn = db.conn.clone();
    observe::install(&mut conn, configured());
    let fixture = fixture(&conn).await?;
    let mut failures = Vec::new();
    for scenario in corpus() {
        let (outcome, report) =
            observe::scope(Scope::test(scenario.name), (scenario.run)(&conn, &fixture)).await;
        outcome.map_err(|e| anyhow::anyhow!("{}: {e}", scenario.name))?;
        let found: Vec<_> = report.findings.iter().collect();
        let matches = found.len() == scenario.expect.len()
            && found.iter().zip(scenario.expect).all(|(finding, expect)| {
                finding.kind == expect.kind
                    // MySQL quotes identifiers with backticks; the table is written as the others do.
                    && finding.fingerprint.replace('`', "\"").contains(expect.statement)
                    && finding.count == expect.count
                    && finding.call_site.as_deref().map(function_of) == Some(expect.call_site)
                    && expect.called_from.is_none_or(|caller| {
                        finding.called_from.as_deref().map(function_of) == Some(caller)
                    })
            });
        if !matches {
            failures.push(format!(
                "{} ({}): expected {:?}, found:\n{}",
                scenario.name,
                scenario.why,
                scenario.expect,
                describe(&report)
            ));
        }
        let statements = report.statement_count();
        match scenario.name {
            "plain_tokio_spawn_is_invisible" if statements != 0 => failures.push(format!(
                "{}: a plain tokio::spawn escapes the scope, but {statements} were captured",
                scenario.name
            )),
            "spawned_lookup_per_row" | "join_set_lookup_per_row" if statements != 6 => {
                failures.push(format!("{}: {statements} statements, not 6", scenario.name))
            }
            "retried_transaction" => {
                let retried = report.statements.iter().filter(|s| s.retried).count();
                if (retried, statements) != (4, 6) {
                    failures.push(format!(
                        "{}: {retried} of {statements} statements retried, not 4 of 6",
                        scenario.name
                    ));
                }
            }
            "keyset_walk_until_a_short_page" | "mercados_export" | "cursor_by_pages"
                if report.paginated.len() != 1 =>
            {
                failures.push(format!(
                    "{}: not read as one keyset walk: {:?}",
                    scenario.name, report.paginated
                ));
            }
            "a_task_outliving_its_scope_is_not_counted" => {
                let (release, late) = LATE.with(|slot| slot.borrow_mut().take()).unwrap();
                release.send(()).ok();
                late.await??;
                if statements != 0 {
                    failures.push(format!("{}: {statements} captured", scenario.name));
                }
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

backend_tests! {
    async fn every_scenario_of_the_corpus_gives_exactly_its_findings(db: TestDb) -> anyhow::Result<()> {
        run_corpus(&db).await
    }
}

#[test]
fn the_corpus_holds_at_least_thirty_scenarios_both_loud_and_silent() {
    let corpus = corpus();
    let loud = corpus.iter().filter(|s| !s.expect.is_empty()).count();
    assert!(corpus.len() >= 30, "{}", corpus.len());
    assert!(
        loud >= 15 && corpus.len() - loud >= 10,
        "{loud} of {}",
        corpus.len()
    );
}
