//! A lazy loop flagged, and its select-in fix silent, on an in-memory SQLite database:
//!
//! ```sh
//! cargo run -p sql-observe --example lazy_loop
//! ```
//!
//! It defines two tables of its own (authors and their books), loads each author's books once
//! per author (an N+1), then all of them in one `IN` query with `LoaderTrait::load_many`, and
//! prints what the detector made of each scope.

// The entity macros need public items inside private modules.
#![allow(unreachable_pub)]

use sea_orm::{ConnectOptions, ConnectionTrait, Database, EntityTrait, LoaderTrait, ModelTrait};
use sql_observe::{ObserveConfig, Scope};
use tracing_subscriber::prelude::*;

mod author {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "author")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::book::Entity")]
        Book,
    }

    impl Related<super::book::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Book.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

mod book {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "book")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub author_id: i32,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::author::Entity",
            from = "Column::AuthorId",
            to = "super::author::Column::Id"
        )]
        Author,
    }

    impl Related<super::author::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Author.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The row-count layer, and a printer for the findings (logged at WARN on `sql_observe`).
    tracing_subscriber::registry()
        .with(sql_observe::row_count_layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::EnvFilter::new("warn,sql_observe=warn")),
        )
        .init();

    let mut options = ConnectOptions::new("sqlite::memory:");
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    options.max_connections(1);
    sql_observe::count_rows(&mut options);
    let mut db = Database::connect(options).await?;
    // Before the connection is cloned anywhere. `lazy_loop` is this example's crate name.
    sql_observe::install(
        &mut db,
        ObserveConfig::default().with_own_crate("lazy_loop"),
    );

    db.execute_unprepared(
        "CREATE TABLE author (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE book (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES author (id),
                            title TEXT NOT NULL);
         INSERT INTO author (id, name) VALUES (1, 'Ursula'), (2, 'Terry'), (3, 'Iain');
         INSERT INTO book (author_id, title) VALUES (1, 'The Dispossessed'), (1, 'Lathe'),
                (2, 'Mort'), (3, 'Excession');",
    )
    .await?;

    let (_, lazy) = sql_observe::scope(Scope::command("lazy"), async {
        let authors = author::Entity::find().all(&db).await?;
        for author in &authors {
            // One query per author: the N+1.
            author.find_related(book::Entity).all(&db).await?;
        }
        anyhow::Ok(())
    })
    .await;
    println!("lazy: {} statements, findings:", lazy.statement_count());
    for finding in &lazy.findings {
        println!("  {finding}");
    }

    let (_, select_in) = sql_observe::scope(Scope::command("select-in"), async {
        let authors = author::Entity::find().all(&db).await?;
        // One `WHERE author_id IN (…)` query for all of them.
        authors.load_many(book::Entity, &db).await?;
        anyhow::Ok(())
    })
    .await;
    println!(
        "select-in: {} statements, {} findings",
        select_in.statement_count(),
        select_in.findings.len()
    );
    for statement in &select_in.statements {
        println!("  {statement}");
    }
    Ok(())
}
