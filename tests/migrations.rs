//! The migrations, run for real on every configured backend: down undoes exactly what up did,
//! money survives the round trip through the database to the cent, and times keep their
//! microseconds.

use std::str::FromStr;

use entity::{accounts, products, users};
use mercado_testkit::{TestDb, backend_tests};
use migration::{Migrator, MigratorTrait};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, Set, Statement};

/// Every table, column, index and constraint of the schema, as text to compare.
async fn schema_of(db: &TestDb) -> anyhow::Result<Vec<String>> {
    let queries: &[&str] = match db.db_backend() {
        DbBackend::Postgres => &[
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
             || ' ' || coalesce(column_default, '') AS line FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'",
            "SELECT indexname || ' ' || indexdef AS line FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename <> 'seaql_migrations'",
            "SELECT conname || ' ' || pg_get_constraintdef(oid) AS line FROM pg_constraint \
             WHERE connamespace = 'public'::regnamespace AND conname NOT LIKE 'seaql%'",
        ],
        DbBackend::MySql => &[
            "SELECT CONCAT_WS(' ', table_name, column_name, column_type, is_nullable, \
             coalesce(column_default, ''), coalesce(character_set_name, ''), \
             coalesce(collation_name, '')) AS line FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name <> 'seaql_migrations'",
            "SELECT CONCAT_WS(' ', table_name, index_name, non_unique, seq_in_index, column_name) \
             AS line FROM information_schema.statistics WHERE table_schema = DATABASE() \
             AND table_name <> 'seaql_migrations'",
            "SELECT CONCAT_WS(' ', table_name, constraint_name, constraint_type) AS line \
             FROM information_schema.table_constraints WHERE constraint_schema = DATABASE() \
             AND table_name <> 'seaql_migrations'",
            "SELECT CONCAT_WS(' ', constraint_name, check_clause) AS line \
             FROM information_schema.check_constraints WHERE constraint_schema = DATABASE()",
        ],
        _ => &[
            "SELECT type || ' ' || name || ' ' || coalesce(sql, '') AS line FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE 'seaql_%'",
        ],
    };
    let mut lines = Vec::new();
    for sql in queries {
        let rows = db
            .conn
            .query_all_raw(Statement::from_string(db.db_backend(), *sql))
            .await?;
        for row in rows {
            lines.push(row.try_get::<String>("", "line")?);
        }
    }
    lines.sort();
    Ok(lines)
}

backend_tests! {
    async fn migrating_down_all_the_way_leaves_no_table_and_up_again_rebuilds_the_same_schema(
        db: TestDb
    ) -> anyhow::Result<()> {
        let migrated = schema_of(&db).await?;
        assert!(migrated.iter().any(|line| line.contains("messages")), "{migrated:#?}");

        Migrator::down(&db.conn, None).await?;
        assert_eq!(schema_of(&db).await?, Vec::<String>::new());

        Migrator::up(&db.conn, None).await?;
        assert_eq!(schema_of(&db).await?, migrated);
        Ok(())
    }

    async fn the_mysql_only_migrations_change_nothing_elsewhere_and_their_down_is_exact(
        db: TestDb
    ) -> anyhow::Result<()> {
        // The last two migrations: times with microseconds, text compared exactly.
        const MYSQL_ONLY: u32 = 2;
        let migrated = schema_of(&db).await?;
        Migrator::down(&db.conn, Some(MYSQL_ONLY)).await?;
        let undone = schema_of(&db).await?;

        Migrator::down(&db.conn, None).await?;
        let before = Migrator::migrations().len() as u32 - MYSQL_ONLY;
        Migrator::up(&db.conn, Some(before)).await?;
        assert_eq!(undone, schema_of(&db).await?, "down is not exact");
        if db.db_backend() == DbBackend::MySql {
            assert_ne!(undone, migrated, "the migrations changed nothing on MySQL");
        } else {
            assert_eq!(undone, migrated, "the migrations changed something off MySQL");
        }
        Ok(())
    }

    async fn every_time_keeps_its_microseconds(db: TestDb) -> anyhow::Result<()> {
        use chrono::{DateTime, FixedOffset};
        let created_at: DateTime<FixedOffset> =
            DateTime::parse_from_rfc3339("2026-12-01T18:21:39.582695Z")?;
        let user = users::ActiveModel {
            username: Set("micro".to_owned()),
            username_canonical: Set("micro".to_owned()),
            email: Set("micro@example.com".to_owned()),
            email_canonical: Set("micro@example.com".to_owned()),
            display_name: Set("Micro".to_owned()),
            created_at: Set(created_at),
            ..Default::default()
        }
        .insert(&db.conn)
        .await?;
        let stored = users::Entity::find_by_id(user.id).one(&db.conn).await?;
        assert_eq!(stored.map(|u| u.created_at), Some(created_at));
        Ok(())
    }

    async fn every_migration_is_applied_after_up_and_none_after_reset(
        db: TestDb
    ) -> anyhow::Result<()> {
        let all = Migrator::migrations().len();
        assert_eq!(Migrator::get_applied_migrations(&db.conn).await?.len(), all);
        assert!(Migrator::get_pending_migrations(&db.conn).await?.is_empty());

        Migrator::reset(&db.conn).await?;
        assert!(Migrator::get_applied_migrations(&db.conn).await?.is_empty());
        assert_eq!(Migrator::get_pending_migrations(&db.conn).await?.len(), all);
        Ok(())
    }

    async fn money_round_trips_to_the_cent(db: TestDb) -> anyhow::Result<()> {
        let amounts = ["0.00", "0.01", "0.10", "0.30", "7.50", "12.34", "1000000.00", "999999999999.99"];
        for (i, amount) in amounts.iter().enumerate() {
            let amount = Decimal::from_str(amount)?;
            let user = users::ActiveModel {
                username: Set(format!("user{i}")),
                username_canonical: Set(format!("user{i}")),
                email: Set(format!("user{i}@example.com")),
                email_canonical: Set(format!("user{i}@example.com")),
                display_name: Set(format!("User {i}")),
                created_at: Set(chrono::Utc::now().into()),
                ..Default::default()
            }
            .insert(&db.conn)
            .await?;
            accounts::ActiveModel {
                user_id: Set(user.id),
                balance: Set(amount),
                updated_at: Set(chrono::Utc::now().into()),
            }
            .insert(&db.conn)
            .await?;
            let stored = accounts::Entity::find_by_id(user.id).one(&db.conn).await?;
            assert_eq!(stored.map(|a| a.balance), Some(amount), "balance {amount}");

            if amount <= Decimal::from_str("9999999999.99")? {
                let product = products::ActiveModel {
                    sku: Set(format!("SKU-{i}")),
                    name: Set(format!("Product {i}")),
                    price: Set(amount),
                    seller_id: Set(user.id),
                    created_at: Set(chrono::Utc::now().into()),
                    ..Default::default()
                }
                .insert(&db.conn)
                .await?;
                let stored = products::Entity::find_by_id(product.id).one(&db.conn).await?;
                assert_eq!(stored.map(|p| p.price), Some(amount), "price {amount}");
            }
        }
        Ok(())
    }
}
