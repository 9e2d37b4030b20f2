//! Starting, reading and listing conversations, on every backend.

#[macro_use]
mod support;

use std::sync::atomic::Ordering;

use anyhow::Context;

use entity::conversations;
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{EntityTrait, PaginatorTrait};
use service::{
    ServiceError,
    domain::chat::{MessageBody, NewConversation, NewMessage, Title},
    ops::{
        conversations::{
            MAX_PARTICIPANTS, create_conversation, get_conversation, list_conversations,
        },
        messages::post_message,
    },
};
use support::{counting_connection, create_user, every_statement, product, start_conversation};

fn new_conversation(title: &str, participant_ids: Vec<i64>) -> anyhow::Result<NewConversation> {
    Ok(NewConversation {
        title: Title::parse(title)?,
        participant_ids,
        product_id: None,
    })
}

async fn say(db: &TestDb, sender_id: i64, conversation_id: i64, body: &str) -> anyhow::Result<i64> {
    let new = NewMessage {
        body: MessageBody::parse(body)?,
        reply_to_id: None,
    };
    Ok(post_message(&db.conn, sender_id, conversation_id, new)
        .await?
        .id)
}

/// Creates `count` conversations for `owner`, each with a second person and two messages.
async fn conversations_with_messages(db: &TestDb, owner: i64, count: usize) -> anyhow::Result<()> {
    for i in 0..count {
        let other = create_user(&db.conn, &format!("other{owner}x{i}")).await?;
        let conversation =
            start_conversation(&db.conn, owner, &format!("chat {i}"), vec![other.id]).await?;
        say(db, owner, conversation.id, "hello").await?;
        say(db, other.id, conversation.id, "hi back").await?;
    }
    Ok(())
}

backend_tests! {
    async fn the_creator_always_takes_part_and_repeated_ids_count_once(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;

        let new = new_conversation("Lunch 🍜", vec![bob.id, bob.id, alice.id, bob.id])?;
        let created = create_conversation(&db.conn, alice.id, new).await?;

        assert_eq!(created.title, "Lunch 🍜");
        assert_eq!(created.product_id, None);
        assert_eq!(created.participants, vec![alice.clone(), bob.clone()]);
        assert_eq!(created.last_message, None);
        assert_eq!(get_conversation(&db.conn, bob.id, created.id).await?, created);
        Ok(())
    }

    async fn an_empty_participant_list_makes_a_conversation_of_one(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;

        let created = create_conversation(&db.conn, alice.id, new_conversation("notes", vec![])?).await?;

        assert_eq!(created.participants, vec![alice]);
        Ok(())
    }

    async fn a_conversation_can_be_about_a_product(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let seller = create_user(&db.conn, "seller").await?;
        let product_id = product(&db.conn, seller.id, "LAMP-1", "12.50", 1).await?.id;

        let mut new = new_conversation("Is the lamp still there?", vec![seller.id])?;
        new.product_id = Some(product_id);
        let created = create_conversation(&db.conn, alice.id, new).await?;

        assert_eq!(created.product_id, Some(product_id));
        assert_eq!(get_conversation(&db.conn, seller.id, created.id).await?.product_id, Some(product_id));
        Ok(())
    }

    async fn an_unknown_participant_is_not_found_and_nothing_is_created(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;

        let result = create_conversation(&db.conn, alice.id, new_conversation("x", vec![alice.id + 1000])?).await;

        assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        assert_eq!(conversations::Entity::find().count(&db.conn).await?, 0);
        Ok(())
    }

    async fn an_unknown_product_is_not_found_and_nothing_is_created(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;

        let mut new = new_conversation("x", vec![])?;
        new.product_id = Some(424_242);
        let result = create_conversation(&db.conn, alice.id, new).await;

        assert!(matches!(result, Err(ServiceError::NotFound { resource: "product" })), "{result:?}");
        assert_eq!(conversations::Entity::find().count(&db.conn).await?, 0);
        Ok(())
    }

    async fn more_participants_than_the_maximum_are_refused(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let too_many: Vec<i64> = (1..=MAX_PARTICIPANTS as i64).map(|i| alice.id + i).collect();

        let result = create_conversation(&db.conn, alice.id, new_conversation("crowd", too_many)?).await;

        assert!(
            matches!(result, Err(ServiceError::Validation { field: "participant_ids", .. })),
            "{result:?}"
        );
        Ok(())
    }

    async fn a_stranger_gets_not_found_exactly_as_for_a_conversation_that_does_not_exist(
        db: TestDb
    ) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let mallory = create_user(&db.conn, "mallory").await?;
        let private = start_conversation(&db.conn, alice.id, "private", vec![]).await?;

        let as_stranger = get_conversation(&db.conn, mallory.id, private.id).await;
        let nonexistent = get_conversation(&db.conn, alice.id, private.id + 1000).await;

        for result in [as_stranger, nonexistent] {
            assert!(
                matches!(result, Err(ServiceError::NotFound { resource: "conversation" })),
                "{result:?}"
            );
        }
        Ok(())
    }

    async fn a_conversation_shows_its_newest_message_with_its_sender(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;
        let chat = start_conversation(&db.conn, alice.id, "chat", vec![bob.id]).await?;
        say(&db, alice.id, chat.id, "first").await?;
        let newest = say(&db, bob.id, chat.id, "second").await?;

        let shown = get_conversation(&db.conn, alice.id, chat.id).await?;

        let last = shown.last_message.context("the conversation has messages")?;
        assert_eq!((last.id, last.body.as_str(), &last.sender), (newest, "second", &bob));
        Ok(())
    }

    async fn a_users_conversations_come_most_recent_activity_first(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        let bob = create_user(&db.conn, "bob").await?;
        let older = start_conversation(&db.conn, alice.id, "older", vec![bob.id]).await?;
        let newer = start_conversation(&db.conn, alice.id, "newer", vec![]).await?;
        let not_hers = start_conversation(&db.conn, bob.id, "bob alone", vec![]).await?;
        // A message makes the older conversation the most recently active one.
        let message_id = say(&db, bob.id, older.id, "bump").await?;

        let listed = list_conversations(&db.conn, alice.id).await?;

        let ids: Vec<i64> = listed.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![older.id, newer.id]);
        assert!(!ids.contains(&not_hers.id));
        assert_eq!(listed[0].last_message.as_ref().map(|m| m.id), Some(message_id));
        assert_eq!(listed[0].participants, vec![alice.clone(), bob.clone()]);
        assert_eq!(listed[1].last_message, None);
        assert_eq!(listed[1].participants, vec![alice]);
        Ok(())
    }

    async fn a_user_without_conversations_lists_none(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        assert_eq!(list_conversations(&db.conn, alice.id).await?, vec![]);
        Ok(())
    }

    async fn listing_conversations_runs_as_many_statements_for_ten_as_for_two(
        db: TestDb
    ) -> anyhow::Result<()> {
        let few = create_user(&db.conn, "few").await?;
        let many = create_user(&db.conn, "many").await?;
        conversations_with_messages(&db, few.id, 2).await?;
        conversations_with_messages(&db, many.id, 10).await?;
        let (conn, statements) = counting_connection(&db, every_statement);

        let listed_few = list_conversations(&conn, few.id).await?;
        let for_two = statements.swap(0, Ordering::SeqCst);
        let listed_many = list_conversations(&conn, many.id).await?;
        let for_ten = statements.swap(0, Ordering::SeqCst);

        assert_eq!((listed_few.len(), listed_many.len()), (2, 10));
        assert!(listed_many.iter().all(|c| c.participants.len() == 2 && c.last_message.is_some()));
        assert_eq!(for_two, for_ten, "statements for 2 conversations vs 10");
        // The conversations each joined to its newest message, then all their participants.
        assert_eq!(for_ten, 2);
        Ok(())
    }

    async fn a_listed_conversation_reads_back_the_same_on_its_own(db: TestDb) -> anyhow::Result<()> {
        let alice = create_user(&db.conn, "alice").await?;
        conversations_with_messages(&db, alice.id, 3).await?;

        let listed = list_conversations(&db.conn, alice.id).await?;
        let first = get_conversation(&db.conn, alice.id, listed[0].id).await?;

        assert_eq!(listed.len(), 3);
        assert_eq!(first, listed[0]);
        Ok(())
    }
}
