//! The NDJSON export, on every backend: what each line holds, and that memory stays bounded by
//! one batch however many rows there are.

#[macro_use]
mod support;

use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use chrono::{DateTime, Utc};
use mercado_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};
use service::{
    bulk::{NewMessageRow, insert_messages},
    domain::chat::{MessageBody, MessageLimit, NewMessage},
    export::{DEFAULT_BATCH_ROWS, ExportScope, export_messages},
    ops::messages::{list_messages, post_message},
};
use support::{counting_connection, create_user, every_statement, start_conversation};
use tokio::io::AsyncWrite;

/// A writer that keeps nothing, but notes how many lines arrived while each statement was the
/// latest one run: the lines an export writes between two reads are the rows it held at once.
/// An export that read everything before writing would put every line after the last statement.
struct LinesPerStatement {
    statements: Arc<AtomicUsize>,
    lines: BTreeMap<usize, usize>,
}

impl LinesPerStatement {
    fn most_lines_after_one_statement(&self) -> usize {
        self.lines.values().copied().max().unwrap_or(0)
    }
}

impl AsyncWrite for LinesPerStatement {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let statement = self.statements.load(Ordering::SeqCst);
        let lines = buf.iter().filter(|&&byte| byte == b'\n').count();
        *self.lines.entry(statement).or_default() += lines;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn seeded(conversation_id: i64, sender_id: i64, count: usize) -> Vec<NewMessageRow> {
    (0..count)
        .map(|i| NewMessageRow {
            conversation_id,
            sender_id,
            reply_to_id: None,
            body: format!("message {i} {}", "x".repeat(i % 50)),
            created_at: Utc::now(),
        })
        .collect()
}

backend_tests! {
    async fn each_message_becomes_one_json_line_with_exact_text(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![]).await?;
        let other = start_conversation(&db.conn, alice.id, "other", vec![]).await?;
        let bodies = ["first line\nsecond \"line\"", "back\\slash\ttab 😀", "{\"looks\": \"like json\"}\n"];
        let mut posted = Vec::new();
        for body in bodies {
            let reply_to_id = posted.first().map(|first: &service::domain::chat::Message| first.id);
            let new = NewMessage { body: MessageBody::parse(body)?, reply_to_id };
            posted.push(post_message(&db.conn, alice.id, chat.id, new).await?);
        }
        let elsewhere = NewMessage { body: MessageBody::parse("elsewhere")?, reply_to_id: None };
        post_message(&db.conn, alice.id, other.id, elsewhere).await?;

        let mut all = Vec::new();
        let exported_all = export_messages(&db.conn, ExportScope::All, &mut all).await?;
        let mut one = Vec::new();
        let exported_one = export_messages(&db.conn, ExportScope::Conversation(chat.id), &mut one).await?;

        assert_eq!((exported_all, exported_one), (4, 3));
        let text = String::from_utf8(one)?;
        assert!(text.ends_with('\n'));
        let lines: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
        for (line, message) in lines.iter().zip(&posted) {
            let created_at = line["created_at"].as_str().unwrap_or_default();
            assert!(created_at.ends_with('Z'), "{created_at}");
            assert_eq!(DateTime::parse_from_rfc3339(created_at)?.to_utc(), message.created_at);
            let expected = json!({
                "id": message.id,
                "conversation_id": chat.id,
                "sender_id": alice.id,
                "reply_to_id": message.reply_to_id,
                "body": message.body,
                "created_at": created_at,
            });
            assert_eq!(line, &expected);
        }
        assert_eq!(lines.len(), 3);
        assert_eq!(String::from_utf8(all)?.lines().count(), 4);
        Ok(())
    }

    async fn the_export_holds_one_batch_at_a_time_for_ten_thousand_rows_as_for_one_thousand(
        db: TestDb
    ) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let small = start_conversation(&db.conn, alice.id, "small", vec![]).await?;
        let large = start_conversation(&db.conn, alice.id, "large", vec![]).await?;
        insert_messages(&db.conn, &seeded(small.id, alice.id, 1_000)).await?;
        insert_messages(&db.conn, &seeded(large.id, alice.id, 10_000)).await?;
        let batch = DEFAULT_BATCH_ROWS.get() as usize;

        let mut held = Vec::new();
        for (conversation_id, rows) in [(small.id, 1_000), (large.id, 10_000)] {
            let (conn, statements) = counting_connection(&db, every_statement);
            let mut writer = LinesPerStatement { statements, lines: BTreeMap::new() };
            let exported = export_messages(&conn, ExportScope::Conversation(conversation_id), &mut writer).await?;
            assert_eq!(exported, rows);
            assert_eq!(writer.lines.values().sum::<usize>(), rows as usize);
            held.push(writer.most_lines_after_one_statement());
        }

        assert_eq!(held, vec![batch, batch], "most rows written per read, for 1,000 and 10,000 rows");
        // And the export returned what is there, newest page included.
        let newest = list_messages(&db.conn, alice.id, large.id, MessageLimit::default(), None).await?;
        assert_eq!(newest.messages.len(), 10);
        Ok(())
    }
}
