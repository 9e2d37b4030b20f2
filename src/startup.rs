//! The application, built from [`Settings`] and run until stopped: by `mercado serve`, and on
//! port 0 by every end-to-end test, so that both run exactly the same thing.
//!
//! [`Application::build`] does everything that can fail before the first request, in order: it
//! connects ([`connect`]: the pool, counting rows, with the SQL capture installed before the
//! connection is cloned), checks the schema ([`crate::schema`]), binds the listener, loads the
//! demo data into an empty database and prints the welcome, and assembles the router over the
//! state. [`Application::run_until_stopped`] then serves until SIGINT or SIGTERM, lets the
//! requests in flight finish, and closes the pool. This module may depend on every crate of the
//! workspace that the binary does.

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use api::AppState;
use axum::Router;
use sea_orm::DatabaseConnection;
use service::pools::{ReadRouter, ReplicaConfig};
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    schema::{SchemaPolicy, ensure_schema},
    settings::Settings,
};

/// What `serve` does before serving, beyond the settings: its own flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Apply pending migrations on any backend (`serve --migrate`); SQLite is migrated anyway.
    pub migrate: bool,
    pub demo_data: DemoData,
}

/// Whether the demo data set is loaded, and what is printed about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DemoData {
    /// Into an empty database (one without users), load the demo data set and print the
    /// welcome with its users' tokens; with any other, print how to get a token (`serve`).
    #[default]
    IntoEmpty,
    /// Load nothing; say so, and how to get a token (`serve --no-demo-data`).
    Skip,
    /// Load nothing and print nothing: for tests and benchmarks, which bring their own data.
    SkipQuietly,
}

/// Connects to the database as every command does: the pool with the row counts turned on
/// (`sql_observe::count_rows`), and Mercado's SQL capture installed with the configured slow
/// threshold, before the connection is cloned anywhere (clones taken earlier would not log or
/// capture).
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    // The lifecycle lines keep the crate's own target (`INFO mercado: …`) wherever they are
    // written from; the URL is shown redacted.
    tracing::info!(target: "mercado", database = %settings.database.url, "connecting");
    let mut db = service::db::connect_with(&settings.database, |options| {
        sql_observe::count_rows(options);
        service::db::cancel_abandoned_statements(options, settings.database.pooler);
    })
    .await?;
    let observe =
        api::sql_scope::observe_config().with_slow_threshold(settings.log.sql_slow_threshold);
    sql_observe::install(&mut db, observe);
    Ok(db)
}

/// Where reads run: on `primary` alone, or also on `DATABASE_REPLICA_URL`. The replica's pool
/// connects lazily, so a replica that is down at start delays nothing: reads go to the primary
/// until the background check finds it up. Its pool waits for a connection no longer than the
/// check does, since a read it fails runs again on the primary.
async fn read_router(
    settings: &Settings,
    primary: &DatabaseConnection,
) -> anyhow::Result<ReadRouter> {
    let Some(url) = &settings.database.replica_url else {
        return Ok(ReadRouter::primary_only(primary.clone()));
    };
    if url.backend() != Some(sea_orm::DbBackend::Postgres) {
        anyhow::bail!("DATABASE_REPLICA_URL {url} is not a PostgreSQL URL");
    }
    tracing::info!(target: "mercado", replica = %url, "reads that tolerate it go to the replica");
    let config = ReplicaConfig::default();
    let replica_settings = service::db::DatabaseSettings {
        url: url.clone(),
        // The replica is reached directly, not through the pooler in front of the primary.
        pooler: service::db::DatabasePooler::None,
        replica_url: None,
        // A read the replica cannot serve runs again on the primary (`ReadRouter::read`): it
        // should give up on the replica as soon as the background check would.
        acquire_timeout: settings.database.acquire_timeout.min(config.check_timeout),
        ..settings.database.clone()
    };
    let mut replica = service::db::connect_with(&replica_settings, |options| {
        sql_observe::count_rows(options);
        // The replica goes away and comes back on its own: check each connection as it is
        // handed out (a bare Sync, no statement), so that one broken by a replica restart is
        // replaced instead of failing a read.
        options.connect_lazy(true).test_before_acquire(true);
    })
    .await?;
    let observe =
        api::sql_scope::observe_config().with_slow_threshold(settings.log.sql_slow_threshold);
    sql_observe::install(&mut replica, observe);
    Ok(ReadRouter::with_replica(primary.clone(), replica, config))
}

/// The application, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    db: DatabaseConnection,
    inspector: Option<api::Inspector>,
}

impl Application {
    /// Connects, checks the schema, binds `settings.server.listen_addr` (port 0 picks a free
    /// one), sees to the demo data and assembles the application.
    pub async fn build(settings: Settings, options: ServeOptions) -> anyhow::Result<Application> {
        Application::build_with_routes(settings, options, OpenApiRouter::new()).await
    }

    /// [`build`](Application::build), with `routes` served beside the API's own, behind the
    /// same middleware and fallbacks: the end-to-end tests mount probes with it (a route that
    /// echoes a JSON body, one that never finishes) to drive the shared machinery through HTTP.
    pub async fn build_with_routes(
        settings: Settings,
        options: ServeOptions,
        routes: OpenApiRouter<AppState>,
    ) -> anyhow::Result<Application> {
        settings.server.check_inspector_address()?;
        let db = connect(&settings).await?;
        let policy = SchemaPolicy::Serve {
            migrate: options.migrate,
        };
        ensure_schema(&db, policy).await?;
        let requested = settings.server.listen_addr;
        let listener = TcpListener::bind(requested)
            .await
            .with_context(|| format!("listening on {requested}"))?;
        let address = listener
            .local_addr()
            .context("reading the address listened on")?;
        greet(&db, options.demo_data, address).await?;
        if settings.database.pooler == service::db::DatabasePooler::PgbouncerTransaction {
            service::pools::warn_without_role_statement_timeout(&db)
                .await
                .context("reading the statement timeout through the pooler")?;
        }
        let health = service::health::DatabaseHealth::watch(&settings.database);
        let mut api_settings = settings.server.api();
        if settings.server.inspect {
            let inspector = api::Inspector::with_database(
                sql_inspector::InspectorConfig::default(),
                db.clone(),
            );
            api_settings.inspector = Some(inspector);
            let url = format!(
                "{}{}",
                mercado_lab::demo_data::base_url(address),
                sql_inspector::PREFIX
            );
            tracing::warn!(
                target: "mercado",
                "the SQL inspector is on at {url}: it shows every request's SQL and values; development only"
            );
            println!("SQL inspector: {url}");
        }
        let inspector = api_settings.inspector.clone();
        let state = AppState::new(db.clone(), api_settings)
            .with_health(health)
            .with_reads(read_router(&settings, &db).await?);
        let router = api::app_with_routes(state, routes);
        Ok(Application {
            listener,
            address,
            router,
            db,
            inspector,
        })
    }

    /// The address the application listens on, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The application's own pool, the one its requests use. Tests close it to see how the
    /// application answers once the database is gone.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Serves until SIGINT (Ctrl-C) or SIGTERM, then as [`run_until`](Application::run_until).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(api::shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then stops accepting connections, waits for the
    /// requests in flight (each bounded by the request timeout) and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(target: "mercado", "serving on http://{}", self.address);
        // Open inspector pages hold an event stream each; ending them lets the graceful
        // shutdown finish instead of waiting for the browser to go away.
        let inspector = self.inspector.clone();
        let shutdown = async move {
            shutdown.await;
            if let Some(inspector) = inspector {
                inspector.close();
            }
        };
        api::serve(self.listener, self.router, shutdown)
            .await
            .context("serving HTTP")?;
        self.db.close().await.context("closing the database pool")?;
        tracing::info!(target: "mercado", "stopped");
        Ok(())
    }
}

/// Loads the demo data as `demo_data` says, and prints what a first visitor needs: the demo
/// users' tokens, or how to get a token of one's own.
async fn greet(
    db: &DatabaseConnection,
    demo_data: DemoData,
    address: SocketAddr,
) -> anyhow::Result<()> {
    use mercado_lab::demo_data::{base_url, how_to_get_a_token, is_empty, load, welcome};

    let base = base_url(address);
    match demo_data {
        DemoData::SkipQuietly => {}
        DemoData::Skip => {
            let why = "No demo data (--no-demo-data).";
            println!("{}", how_to_get_a_token(why, &base));
        }
        DemoData::IntoEmpty if is_empty(db).await? => {
            let demo = load(db).await.context("loading the demo data set")?;
            println!("{}", welcome(&demo, &base));
        }
        DemoData::IntoEmpty => {
            let why = "The database already has users, so no demo data was loaded.";
            println!("{}", how_to_get_a_token(why, &base));
        }
    }
    Ok(())
}
