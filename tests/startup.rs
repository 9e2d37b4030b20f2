//! What happens before the first request, on every backend: the one policy on pending
//! migrations (`mercado::schema`) as each command meets it, and the demo data `serve` loads into
//! an empty database only.

mod support;

use entity::users;
use mercado::{
    schema::{SchemaPolicy, ensure_schema},
    startup::{Application, DemoData, ServeOptions},
};
use mercado_testkit::{Backend, TestDb, backend_tests};
use migration::{Migrator, MigratorTrait};
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};

/// Rolls the test database's last migration back, so that exactly one is pending; returns its
/// name.
async fn one_migration_pending(db: &TestDb) -> anyhow::Result<String> {
    Migrator::down(&db.conn, Some(1)).await?;
    let pending = Migrator::get_pending_migrations(&db.conn).await?;
    assert_eq!(pending.len(), 1);
    Ok(pending[0].name().to_owned())
}

/// The message of a refusal; a command that went ahead fails the test.
fn refusal(result: anyhow::Result<()>) -> anyhow::Result<String> {
    match result {
        Ok(()) => anyhow::bail!("expected a refusal, but the command went ahead"),
        Err(error) => Ok(format!("{error:#}")),
    }
}

async fn pending_count(db: &TestDb) -> anyhow::Result<usize> {
    Ok(Migrator::get_pending_migrations(&db.conn).await?.len())
}

backend_tests! {
    async fn serve_migrates_sqlite_and_refuses_a_server_naming_what_is_pending(
        db: TestDb
    ) -> anyhow::Result<()> {
        let name = one_migration_pending(&db).await?;

        let result = ensure_schema(&db.conn, SchemaPolicy::Serve { migrate: false }).await;

        match db.backend {
            Backend::Sqlite => {
                result?;
                assert_eq!(pending_count(&db).await?, 0);
            }
            Backend::Postgres | Backend::Mysql => {
                let message = refusal(result)?;
                let expected = format!("1 migration(s) pending: {name}.");
                assert!(message.starts_with(&expected), "{message}");
                assert!(message.contains("`mercado serve --migrate`"), "{message}");
                assert_eq!(pending_count(&db).await?, 1);
            }
        }
        Ok(())
    }

    async fn serve_migrate_applies_pending_migrations_on_every_backend(
        db: TestDb
    ) -> anyhow::Result<()> {
        one_migration_pending(&db).await?;

        ensure_schema(&db.conn, SchemaPolicy::Serve { migrate: true }).await?;

        assert_eq!(pending_count(&db).await?, 0);
        Ok(())
    }

    async fn demo_and_compare_migrate_sqlite_and_refuse_a_server(
        db: TestDb
    ) -> anyhow::Result<()> {
        one_migration_pending(&db).await?;

        let result = ensure_schema(&db.conn, SchemaPolicy::Experiment).await;

        match db.backend {
            Backend::Sqlite => {
                result?;
                assert_eq!(pending_count(&db).await?, 0);
            }
            Backend::Postgres | Backend::Mysql => {
                let message = refusal(result)?;
                let expected = "1 migration(s) are pending: run `mercado migrate up`";
                assert!(message.starts_with(expected), "{message}");
                assert_eq!(pending_count(&db).await?, 1);
            }
        }
        Ok(())
    }

    async fn seed_and_export_never_migrate(db: TestDb) -> anyhow::Result<()> {
        one_migration_pending(&db).await?;

        let result = ensure_schema(&db.conn, SchemaPolicy::Data).await;

        let message = refusal(result)?;
        let expected = "1 migrations are pending: run `mercado migrate up`";
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(pending_count(&db).await?, 1);
        Ok(())
    }

    async fn an_up_to_date_schema_passes_every_policy(db: TestDb) -> anyhow::Result<()> {
        for policy in [
            SchemaPolicy::Serve { migrate: false },
            SchemaPolicy::Serve { migrate: true },
            SchemaPolicy::Experiment,
            SchemaPolicy::Data,
        ] {
            ensure_schema(&db.conn, policy).await?;
        }
        Ok(())
    }

    async fn serve_loads_the_demo_data_into_an_empty_database_and_never_again(
        db: TestDb
    ) -> anyhow::Result<()> {
        for _ in 0..2 {
            let settings = support::settings_for(&db);
            let application = Application::build(settings, ServeOptions::default()).await?;
            application.run_until(std::future::ready(())).await?;
        }

        let users = users::Entity::find().order_by_asc(users::Column::Id).all(&db.conn).await?;
        let usernames: Vec<&str> = users.iter().map(|user| user.username.as_str()).collect();
        assert_eq!(usernames, ["ann", "bob", "carol"], "loaded once");
        Ok(())
    }

    async fn serve_without_demo_data_leaves_an_empty_database_empty(
        db: TestDb
    ) -> anyhow::Result<()> {
        for demo_data in [DemoData::Skip, DemoData::SkipQuietly] {
            let options = ServeOptions { demo_data, ..ServeOptions::default() };
            let application = Application::build(support::settings_for(&db), options).await?;
            application.run_until(std::future::ready(())).await?;
        }

        assert_eq!(users::Entity::find().count(&db.conn).await?, 0);
        Ok(())
    }
}
