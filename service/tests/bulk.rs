//! Bulk loading: chunked inserts under the bind-parameter limit on every backend, and COPY on
//! PostgreSQL.

#[macro_use]
mod support;

use std::sync::atomic::Ordering;

use chrono::{SubsecRound, TimeZone, Utc};
use entity::messages;
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};
use service::bulk::{
    NewMessageRow, POSTGRES_MAX_BIND_PARAMETERS, copy_messages, insert_messages, rows_per_statement,
};
use support::{counting_connection, create_user, start_conversation};

fn rows(conversation_id: i64, sender_id: i64, count: usize) -> Vec<NewMessageRow> {
    (0..count)
        .map(|i| NewMessageRow {
            conversation_id,
            sender_id,
            reply_to_id: None,
            body: format!("bulk {i}"),
            created_at: Utc::now().trunc_subsecs(6),
        })
        .collect()
}

fn inserts_into_messages(sql: &str) -> bool {
    // PostgreSQL and SQLite quote identifiers with `"`, MySQL with a backtick.
    sql.starts_with("INSERT INTO \"messages\"") || sql.starts_with("INSERT INTO `messages`")
}

/// Text that breaks naive CSV, COPY text format or SQL quoting.
fn hostile_bodies() -> Vec<String> {
    vec![
        "plain".to_owned(),
        "comma, \"double quotes\", 'single'".to_owned(),
        "tab\tcarriage\rreturn\r\nnewline\nend".to_owned(),
        "back\\slash \\N \\. \\\\ \\t".to_owned(),
        "\\.".to_owned(),
        "".to_owned(),
        "\"".to_owned(),
        "emoji 😀👩‍👩‍👧‍👦 é".to_owned(),
        "'); DROP TABLE messages; --".to_owned(),
        "NULL".to_owned(),
        "x".repeat(10_000),
    ]
}

backend_tests! {
    async fn thirty_thousand_messages_go_in_several_statements_under_the_bind_limit(
        db: TestDb
    ) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "bulk", vec![]).await?;
        let (conn, inserts) = counting_connection(&db, inserts_into_messages);
        let per_statement = rows_per_statement::<messages::Entity>(db.db_backend());

        let inserted = insert_messages(&conn, &rows(chat.id, alice.id, 30_000)).await?;

        assert_eq!(inserted, 30_000);
        assert_eq!(messages::Entity::find().count(&db.conn).await?, 30_000);
        assert!(per_statement * 6 <= POSTGRES_MAX_BIND_PARAMETERS);
        let statements = inserts.load(Ordering::SeqCst);
        assert_eq!(statements, 30_000_usize.div_ceil(per_statement));
        assert!(statements > 1, "{statements} statement(s)");
        Ok(())
    }

    async fn one_bad_row_leaves_nothing_of_a_bulk_insert(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "bulk", vec![]).await?;
        let mut batch = rows(chat.id, alice.id, 30_000);
        // The last chunk names a conversation that does not exist.
        batch[29_999].conversation_id = chat.id + 1000;

        let result = insert_messages(&db.conn, &batch).await;

        assert!(result.is_err(), "{result:?}");
        assert_eq!(messages::Entity::find().count(&db.conn).await?, 0);
        Ok(())
    }
}

postgres_tests! {
    async fn one_unchunked_insert_of_thirty_thousand_messages_is_refused_by_the_driver(
        db: TestDb
    ) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "bulk", vec![]).await?;
        let models = rows(chat.id, alice.id, 30_000).into_iter().map(|row| messages::ActiveModel {
            conversation_id: sea_orm::Set(row.conversation_id),
            sender_id: sea_orm::Set(row.sender_id),
            reply_to_id: sea_orm::Set(row.reply_to_id),
            body: sea_orm::Set(row.body),
            created_at: sea_orm::Set(row.created_at.into()),
            ..Default::default()
        });

        let result = messages::Entity::insert_many(models).exec_without_returning(&db.conn).await;

        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("too many arguments"), "{error}");
        Ok(())
    }

    async fn copy_loads_hostile_text_exactly_as_it_was(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "copy", vec![]).await?;
        let first = service::ops::messages::post_message(
            &db.conn,
            alice.id,
            chat.id,
            service::domain::chat::NewMessage {
                body: service::domain::chat::MessageBody::parse("reply to me")?,
                reply_to_id: None,
            },
        )
        .await?;
        let created_at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap_or_default();
        let sent: Vec<NewMessageRow> = hostile_bodies()
            .into_iter()
            .enumerate()
            .map(|(i, body)| NewMessageRow {
                conversation_id: chat.id,
                sender_id: alice.id,
                reply_to_id: (i % 2 == 0).then_some(first.id),
                body,
                created_at,
            })
            .collect();

        let copied = copy_messages(db.conn.get_postgres_connection_pool(), &sent).await?;

        assert_eq!(copied, sent.len() as u64);
        let stored = messages::Entity::find()
            .order_by_asc(messages::Column::Id)
            .all(&db.conn)
            .await?;
        let loaded: Vec<NewMessageRow> = stored[1..]
            .iter()
            .map(|m| NewMessageRow {
                conversation_id: m.conversation_id,
                sender_id: m.sender_id,
                reply_to_id: m.reply_to_id,
                body: m.body.clone(),
                created_at: m.created_at.to_utc(),
            })
            .collect();
        assert_eq!(loaded, sent);
        Ok(())
    }

    async fn copy_sends_thirty_thousand_messages_in_pieces_and_a_bad_row_loads_nothing(
        db: TestDb
    ) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "copy", vec![]).await?;
        let pool = db.conn.get_postgres_connection_pool();
        // About 3 MB of CSV: several pieces of 1 MiB.
        let mut many = rows(chat.id, alice.id, 30_000);
        for row in &mut many {
            row.body.push_str(&"y".repeat(80));
        }

        let copied = copy_messages(pool, &many).await?;
        many[29_999].conversation_id = chat.id + 1000;
        let refused = copy_messages(pool, &many).await;

        assert_eq!(copied, 30_000);
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(messages::Entity::find().count(&db.conn).await?, 30_000);
        Ok(())
    }
}
