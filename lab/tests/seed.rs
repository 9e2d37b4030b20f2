//! `mercado_lab::seed`: the data set it writes is the size asked for, and consistent.

use entity::{
    accounts, conversation_participants, conversations, inventory, messages, products, users,
};
use mercado_lab::seed::{SeedSizes, seed};
use mercado_testkit::{TestDb, backend_tests};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, Statement};
use service::ServiceError;

backend_tests! {
    async fn seeding_writes_the_requested_rows_and_every_sender_takes_part_in_their_conversation(
        db: TestDb
    ) -> anyhow::Result<()> {
        let sizes = SeedSizes { users: 12, conversations: 30, messages: 2_500, products: 7 };
        let mut reported = Vec::new();
        let report = seed(&db.conn, sizes, 7, |p| reported.push((p.table, p.done, p.total))).await?;

        assert_eq!(users::Entity::find().count(&db.conn).await?, 12);
        assert_eq!(accounts::Entity::find().count(&db.conn).await?, 12);
        assert_eq!(products::Entity::find().count(&db.conn).await?, 7);
        assert_eq!(inventory::Entity::find().count(&db.conn).await?, 7);
        assert_eq!(conversations::Entity::find().count(&db.conn).await?, 30);
        assert_eq!(messages::Entity::find().count(&db.conn).await?, 2_500);
        let participants = conversation_participants::Entity::find().count(&db.conn).await?;
        assert!((30..=60).contains(&participants), "{participants} participants");

        let outsiders = db
            .conn
            .query_one_raw(Statement::from_string(
                db.db_backend(),
                "SELECT COUNT(*) AS n FROM messages m WHERE NOT EXISTS (SELECT 1 FROM \
                 conversation_participants p WHERE p.conversation_id = m.conversation_id \
                 AND p.user_id = m.sender_id)",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?;
        assert_eq!(outsiders, Some(0));

        let balances: Vec<Decimal> =
            accounts::Entity::find().all(&db.conn).await?.into_iter().map(|a| a.balance).collect();
        assert!(balances.iter().all(|b| *b == Decimal::new(100_000, 2)), "{balances:?}");
        assert_eq!(report.tables.iter().find(|t| t.table == "messages").map(|t| t.rows), Some(2_500));
        assert_eq!(reported.last(), Some(&("messages", 2_500, 2_500)));
        Ok(())
    }

    async fn seeding_twice_adds_a_second_data_set_beside_the_first(db: TestDb) -> anyhow::Result<()> {
        let sizes = SeedSizes { users: 3, conversations: 2, messages: 10, products: 1 };
        let first = seed(&db.conn, sizes, 1, |_| {}).await?;
        let second = seed(&db.conn, sizes, 1, |_| {}).await?;

        assert_ne!(first.tag, second.tag);
        assert_eq!(users::Entity::find().count(&db.conn).await?, 6);
        assert_eq!(messages::Entity::find().count(&db.conn).await?, 20);
        Ok(())
    }

    async fn messages_without_conversations_are_refused(db: TestDb) -> anyhow::Result<()> {
        let sizes = SeedSizes { users: 3, conversations: 0, messages: 10, products: 0 };
        let refused = seed(&db.conn, sizes, 1, |_| {}).await;

        assert!(matches!(refused, Err(ServiceError::Validation { field: "conversations", .. })));
        assert_eq!(users::Entity::find().count(&db.conn).await?, 0);
        Ok(())
    }
}
