//! A development-only SQL inspector for any SeaORM + axum application: a page at
//! `/_inspector` listing the most recent requests (a bounded ring) with their statement
//! counts, database time and an N+1 badge, and for each one its statements in order — SQL
//! formatted and highlighted, bound values, duration, rows, fingerprint group, a waterfall — the
//! detector's findings with call site and SeaORM fix, and, on PostgreSQL, `EXPLAIN` of a SELECT.
//! New requests appear without a reload (server-sent events); the same data is JSON at
//! `/_inspector/requests` and `/_inspector/requests/{id}`. It is fed with
//! [`sql_observe::ScopeReport`]s by the application's own middleware ([`Inspector::record`]),
//! and the same rendering writes static HTML reports ([`report`]).
//!
//! It shows the SQL and the bound values of every request, as the capture redacted them (a
//! secret column's value is `'***'` and was never captured), so it is for development only: an
//! application mounts it behind a switch that is off by default.
//!
//! It may depend on `sql-observe`, SeaORM, axum, tokio, futures, serde (and serde_json),
//! chrono, maud (server-rendered HTML) and sqlformat, and on no other crate of the workspace:
//! the application depends on it, never the other way round. Its assets (a stylesheet and a
//! little plain JavaScript) are embedded with `include_str!`; nothing is fetched from a network.

mod explain;
mod model;
pub mod render;
pub mod report;
mod routes;

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use sea_orm::DatabaseConnection;
use sql_observe::ScopeReport;
use tokio::sync::{broadcast, watch};

pub use model::{
    FindingView, REDACTED, RecordedRequest, RequestMeta, RequestSummary, StatementView, Trace,
};
pub use routes::PREFIX;

/// How much the inspector keeps.
#[derive(Debug, Clone, Copy)]
pub struct InspectorConfig {
    /// The most recent requests kept; older ones are forgotten.
    pub capacity: usize,
    /// The statements kept of each request; those past it are counted, not kept.
    pub statement_limit: usize,
}

impl Default for InspectorConfig {
    fn default() -> Self {
        Self {
            capacity: 200,
            statement_limit: 500,
        }
    }
}

/// The recorded requests, shared by the middleware that records them and the routes that show
/// them. Cloning it is cheap; every clone is the same inspector.
#[derive(Clone)]
pub struct Inspector {
    inner: Arc<Inner>,
}

struct Inner {
    config: InspectorConfig,
    ring: Mutex<VecDeque<Arc<RecordedRequest>>>,
    next_id: AtomicU64,
    events: broadcast::Sender<RequestSummary>,
    closed: watch::Sender<bool>,
    db: Option<DatabaseConnection>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("config", &self.inner.config)
            .field("recorded", &self.len())
            .field("explains", &self.inner.db.is_some())
            .finish()
    }
}

impl Inspector {
    /// An inspector without a database: everything but `EXPLAIN`.
    pub fn new(config: InspectorConfig) -> Self {
        Self::build(config, None)
    }

    /// An inspector that runs `EXPLAIN` through `db` (on PostgreSQL), outside any recorded
    /// scope.
    pub fn with_database(config: InspectorConfig, db: DatabaseConnection) -> Self {
        Self::build(config, Some(db))
    }

    fn build(config: InspectorConfig, db: Option<DatabaseConnection>) -> Self {
        let (events, _) = broadcast::channel(64);
        let (closed, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                config: InspectorConfig {
                    capacity: config.capacity.max(1),
                    ..config
                },
                ring: Mutex::new(VecDeque::new()),
                next_id: AtomicU64::new(1),
                events,
                closed,
                db,
            }),
        }
    }

    /// Keeps `report` with `meta` as the newest request (forgetting the oldest past the
    /// capacity), tells the open event streams, and returns its id.
    pub fn record(&self, meta: RequestMeta, report: &ScopeReport) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Arc::new(RecordedRequest::new(
            id,
            meta,
            report,
            self.inner.config.statement_limit,
        ));
        let summary = request.summary();
        {
            let mut ring = self.ring();
            ring.push_front(request);
            ring.truncate(self.inner.config.capacity);
        }
        // No receiver (no page open) is not an error.
        let _ = self.inner.events.send(summary);
        id
    }

    /// The requests kept, newest first.
    pub fn requests(&self) -> Vec<Arc<RecordedRequest>> {
        self.ring().iter().cloned().collect()
    }

    /// The request `id`, while it is kept.
    pub fn get(&self, id: u64) -> Option<Arc<RecordedRequest>> {
        self.ring().iter().find(|r| r.id == id).cloned()
    }

    pub fn len(&self) -> usize {
        self.ring().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every open event stream, so that a graceful shutdown need not wait for the pages
    /// still open; call it when the server starts shutting down.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// The inspector's routes, under [`PREFIX`], ready to merge into the application's router.
    /// The application's recording middleware should not record them ([`is_inspector_path`]).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        routes::router(self.clone())
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<RecordedRequest>>> {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `path` is one of the inspector's own (which it does not record).
pub fn is_inspector_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/_inspector/")
}
