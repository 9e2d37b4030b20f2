//! Posting messages and paging through them, on every backend; the page query's plan on
//! PostgreSQL.

#[macro_use]
mod support;

use std::{collections::HashSet, sync::atomic::Ordering};

use chrono::Utc;
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};
use service::{
    ServiceError,
    bulk::{NewMessageRow, insert_messages},
    domain::chat::{Message, MessageBody, MessageLimit, MessagePage, NewMessage},
    ops::messages::{list_messages, post_message},
    repo,
};
use support::{counting_connection, create_user, every_statement, start_conversation};

fn new_message(body: &str, reply_to_id: Option<i64>) -> anyhow::Result<NewMessage> {
    Ok(NewMessage {
        body: MessageBody::parse(body)?,
        reply_to_id,
    })
}

fn limit(n: i64) -> anyhow::Result<MessageLimit> {
    Ok(MessageLimit::parse(Some(n))?)
}

/// Posts `count` numbered messages, alternating between two senders; returns their ids, oldest
/// first.
async fn post_numbered(
    db: &TestDb,
    senders: [i64; 2],
    conversation_id: i64,
    count: usize,
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let sender = senders[i % 2];
        let posted = post_message(
            &db.conn,
            sender,
            conversation_id,
            new_message(&format!("message {i}"), None)?,
        )
        .await?;
        ids.push(posted.id);
    }
    Ok(ids)
}

/// Reads every page with `limit`, following `next_before`; returns the pages.
async fn all_pages(
    db: &TestDb,
    user_id: i64,
    conversation_id: i64,
    limit: MessageLimit,
) -> anyhow::Result<Vec<MessagePage>> {
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = list_messages(&db.conn, user_id, conversation_id, limit, before).await?;
        before = page.next_before;
        pages.push(page);
        if before.is_none() {
            return Ok(pages);
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

fn ids_of(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

backend_tests! {
    async fn a_participant_posts_and_the_message_comes_back_with_its_sender(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![bob.id]).await?;

        let posted = post_message(&db.conn, bob.id, chat.id, new_message("hello", None)?).await?;

        assert_eq!((posted.conversation_id, &posted.sender, posted.body.as_str()), (chat.id, &bob, "hello"));
        assert_eq!(posted.reply_to_id, None);
        let page = list_messages(&db.conn, alice.id, chat.id, MessageLimit::default(), None).await?;
        assert_eq!(page.messages, vec![posted]);
        assert_eq!(page.next_before, None);
        Ok(())
    }

    async fn strangers_can_neither_post_nor_read_and_see_not_found(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let mallory = create_user(&db.conn, "mallory").await?;
        let chat = start_conversation(&db.conn, alice.id, "private", vec![]).await?;

        let posted = post_message(&db.conn, mallory.id, chat.id, new_message("let me in", None)?).await;
        let read = list_messages(&db.conn, mallory.id, chat.id, MessageLimit::default(), None).await;
        let missing = list_messages(&db.conn, alice.id, chat.id + 1000, MessageLimit::default(), None).await;
        let posted_to_missing = post_message(&db.conn, alice.id, chat.id + 1000, new_message("anyone?", None)?).await;

        assert!(matches!(posted, Err(ServiceError::NotFound { resource: "conversation" })), "{posted:?}");
        assert!(matches!(read, Err(ServiceError::NotFound { resource: "conversation" })), "{read:?}");
        assert!(matches!(missing, Err(ServiceError::NotFound { resource: "conversation" })), "{missing:?}");
        assert!(
            matches!(posted_to_missing, Err(ServiceError::NotFound { resource: "conversation" })),
            "{posted_to_missing:?}"
        );
        assert!(list_messages(&db.conn, alice.id, chat.id, MessageLimit::default(), None).await?.messages.is_empty());
        Ok(())
    }

    async fn a_stranger_sees_not_found_even_where_there_are_messages_to_hide(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let mallory = create_user(&db.conn, "mallory").await?;
        let chat = start_conversation(&db.conn, alice.id, "private", vec![]).await?;
        let posted = post_numbered(&db, [alice.id, alice.id], chat.id, 3).await?;

        let read = list_messages(&db.conn, mallory.id, chat.id, MessageLimit::default(), None).await;
        let deeper = list_messages(&db.conn, mallory.id, chat.id, MessageLimit::default(), Some(posted[2])).await;

        assert!(matches!(read, Err(ServiceError::NotFound { resource: "conversation" })), "{read:?}");
        assert!(matches!(deeper, Err(ServiceError::NotFound { resource: "conversation" })), "{deeper:?}");
        let own = list_messages(&db.conn, alice.id, chat.id, MessageLimit::default(), None).await?;
        assert_eq!(own.messages.len(), 3);
        Ok(())
    }

    async fn a_reply_must_point_into_the_same_conversation(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let here = start_conversation(&db.conn, alice.id, "here", vec![]).await?;
        let elsewhere = start_conversation(&db.conn, alice.id, "elsewhere", vec![]).await?;
        let question = post_message(&db.conn, alice.id, here.id, new_message("question?", None)?).await?;
        let other = post_message(&db.conn, alice.id, elsewhere.id, new_message("unrelated", None)?).await?;

        let answer = post_message(&db.conn, alice.id, here.id, new_message("answer", Some(question.id))?).await?;
        let across = post_message(&db.conn, alice.id, here.id, new_message("wrong", Some(other.id))?).await;
        let dangling = post_message(&db.conn, alice.id, here.id, new_message("wrong", Some(other.id + 1000))?).await;

        assert_eq!(answer.reply_to_id, Some(question.id));
        for refused in [across, dangling] {
            assert!(
                matches!(refused, Err(ServiceError::Validation { field: "reply_to_id", .. })),
                "{refused:?}"
            );
        }
        let stored = list_messages(&db.conn, alice.id, here.id, MessageLimit::default(), None).await?;
        assert_eq!(ids_of(&stored.messages), vec![answer.id, question.id]);
        Ok(())
    }

    async fn text_is_stored_and_returned_byte_for_byte(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "\"quoted\" 'title' \\ 😀", vec![]).await?;
        let bodies = [
            "emoji 😀👩‍👩‍👧‍👦 and combining é".to_owned(),
            "\"double\" and 'single' quotes".to_owned(),
            "back\\slash \\n \\\\ \\N".to_owned(),
            "'); DROP TABLE messages; --".to_owned(),
            "tab\there\r\nnewline\n  trailing spaces  ".to_owned(),
            "%_ like wildcards %".to_owned(),
            "x".repeat(4000),
            "😀".repeat(4000),
        ];

        for body in &bodies {
            post_message(&db.conn, alice.id, chat.id, new_message(body, None)?).await?;
        }
        let page = list_messages(&db.conn, alice.id, chat.id, limit(100)?, None).await?;

        let returned: Vec<&str> = page.messages.iter().rev().map(|m| m.body.as_str()).collect();
        let sent: Vec<&str> = bodies.iter().map(String::as_str).collect();
        assert_eq!(returned, sent);
        let shown = service::ops::conversations::get_conversation(&db.conn, alice.id, chat.id).await?;
        assert_eq!(shown.title, "\"quoted\" 'title' \\ 😀");
        assert!(matches!(
            MessageBody::parse("x".repeat(10_000)),
            Err(ServiceError::Validation { field: "body", .. })
        ));
        Ok(())
    }

    async fn pagination_walks_every_message_once_newest_first(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![bob.id]).await?;
        let noise = start_conversation(&db.conn, bob.id, "noise", vec![]).await?;
        let posted = post_numbered(&db, [alice.id, bob.id], chat.id, 25).await?;
        post_numbered(&db, [bob.id, bob.id], noise.id, 5).await?;

        let pages = all_pages(&db, bob.id, chat.id, limit(10)?).await?;

        let sizes: Vec<usize> = pages.iter().map(|p| p.messages.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let walked: Vec<i64> = pages.iter().flat_map(|p| ids_of(&p.messages)).collect();
        let newest_first: Vec<i64> = posted.iter().rev().copied().collect();
        assert_eq!(walked, newest_first);
        assert_eq!(walked.iter().collect::<HashSet<_>>().len(), 25);
        assert_eq!(pages[0].next_before, Some(newest_first[9]));
        // Senders come with the messages: the newest, number 24, was alice's; 23 was bob's.
        assert_eq!(pages[0].messages[0].sender, alice);
        assert_eq!(pages[0].messages[1].sender, bob);
        Ok(())
    }

    async fn a_last_page_that_is_exactly_full_has_no_next_page(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![]).await?;
        let posted = post_numbered(&db, [alice.id, alice.id], chat.id, 20).await?;

        let pages = all_pages(&db, alice.id, chat.id, limit(10)?).await?;

        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].next_before, Some(posted[10]));
        assert_eq!(pages[1].messages.len(), 10);
        assert_eq!(pages[1].next_before, None);
        Ok(())
    }

    async fn a_page_before_the_oldest_message_is_empty(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![]).await?;
        let posted = post_numbered(&db, [alice.id, alice.id], chat.id, 3).await?;

        let page = list_messages(&db.conn, alice.id, chat.id, MessageLimit::default(), Some(posted[0])).await?;

        assert_eq!(page, MessagePage { messages: vec![], next_before: None });
        Ok(())
    }

    async fn a_page_of_fifty_runs_as_many_statements_as_a_page_of_five(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![bob.id]).await?;
        post_numbered(&db, [alice.id, bob.id], chat.id, 60).await?;
        let (conn, statements) = counting_connection(&db, every_statement);

        let five = list_messages(&conn, alice.id, chat.id, limit(5)?, None).await?;
        let for_five = statements.swap(0, Ordering::SeqCst);
        let fifty = list_messages(&conn, alice.id, chat.id, limit(50)?, None).await?;
        let for_fifty = statements.swap(0, Ordering::SeqCst);

        assert_eq!((five.messages.len(), fifty.messages.len()), (5, 50));
        assert_eq!(for_five, for_fifty, "statements for limit 5 vs limit 50");
        // The participant check rides inside the page's statement.
        assert_eq!(for_fifty, 1);
        Ok(())
    }
}

postgres_tests! {
    async fn the_last_ten_query_scans_the_conversation_index_without_sorting(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let mut conversation_ids = Vec::new();
        for i in 0..23 {
            conversation_ids.push(start_conversation(&db.conn, alice.id, &format!("c{i}"), vec![]).await?.id);
        }
        // One conversation among many busy ones: 100 of its messages among 20,000.
        let target = conversation_ids[3];
        let rows: Vec<NewMessageRow> = (0..20_000)
            .map(|i| NewMessageRow {
                conversation_id: if i % 200 == 0 { target } else { conversation_ids[i % 19 + 4] },
                sender_id: alice.id,
                reply_to_id: None,
                body: format!("seeded {i}"),
                created_at: Utc::now(),
            })
            .collect();
        insert_messages(&db.conn, &rows).await?;
        db.conn.execute_unprepared("ANALYZE messages").await?;

        for before in [None, Some(15_000)] {
            let query = repo::messages::page_query(target, alice.id, before, 11).build(DbBackend::Postgres);
            let explain = Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("EXPLAIN {}", query.sql),
                query.values.map(|values| values.0).unwrap_or_default(),
            );
            let plan: Vec<String> = db
                .conn
                .query_all_raw(explain)
                .await?
                .iter()
                .map(|row| row.try_get::<String>("", "QUERY PLAN"))
                .collect::<Result<_, _>>()?;
            let plan = plan.join("\n");

            assert!(plan.contains("ix_messages_conversation_id_id"), "{plan}");
            assert!(plan.contains("Backward"), "{plan}");
            assert!(!plan.contains("Sort"), "{plan}");
        }
        Ok(())
    }
}
