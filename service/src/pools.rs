//! Where a read-only operation runs: the primary, or a streaming replica ([`ReadRouter`]).
//!
//! Operations keep taking a `&DatabaseConnection`; the caller (the api's read handlers) asks the
//! router for the connection a read may use and passes it on. Writes, and the reads inside a
//! write, always take the primary — they never ask the router. With no replica configured
//! (`DATABASE_REPLICA_URL` unset) the router hands out the primary and sends no statement of its
//! own.
//!
//! With a replica, a read goes to it when it is up, not too far behind, and has replayed what
//! the client says it must see:
//!
//! * **Read your writes, by LSN.** After a write commits, the api asks the primary for its WAL
//!   position ([`ReadRouter::primary_lsn`], `pg_current_wal_lsn()`, taken *after* the commit: a
//!   position read inside the write's transaction is before its commit record) and returns it in
//!   the `x-read-after-lsn` header. A read that sends it back waits on the replica until
//!   `pg_last_wal_replay_lsn()` has reached it, polling, for at most
//!   [`ReplicaConfig::wait_for_lsn`] (500 ms); then it reads the primary instead. No state is
//!   kept per client or per process: the token travels with the client, so any process behind
//!   the balancer can serve the next read.
//! * **Down or lagging → the primary.** A background check ([`ReplicaConfig::check_every`],
//!   500 ms) reads the primary's WAL position and the replica's replay position; the replica's
//!   lag is how long ago the primary was at a position the replica has replayed
//!   ([`LagTracker`]). A replica that does not answer, is no longer a standby, or is more than
//!   [`ReplicaConfig::max_lag`] (5 s) behind gets no reads until it recovers; each such
//!   fallback is logged at WARN, at most once per [`ReplicaConfig::warn_every`] with the number
//!   of reads it stood for.
//! * **A read the replica fails runs again on the primary.** Between two checks the replica
//!   may stop, restart or become unreachable. A read that [`ReadRouter::read`] sent to it and
//!   that fails for want of a connection ([`ServiceError::is_connectivity`]) marks the replica
//!   down at once and runs again on the primary, so that no read fails because of the replica
//!   alone. The replica's pool waits at most [`ReplicaConfig::check_timeout`] for a connection
//!   (`startup` sets it), which bounds what such a read loses.
//!
//! [`route`] is the decision itself, a pure function, so the rules are unit-tested without a
//! database.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    str::FromStr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use crate::ServiceError;

/// A PostgreSQL WAL position (`pg_lsn`), as `pg_current_wal_lsn()` shows it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not an LSN (such as 0/16B3748)");
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let is_hex = |part: &str| !part.is_empty() && part.len() <= 8;
        if !is_hex(high) || !is_hex(low) {
            return Err(bad());
        }
        let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((high << 32) | low))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// How the router treats the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// A read with an LSN waits at most this long for the replica to replay it.
    pub wait_for_lsn: Duration,
    /// A replica further behind than this gets no reads.
    pub max_lag: Duration,
    /// How often the background check measures the replica.
    pub check_every: Duration,
    /// A check that takes longer than this counts as the replica being down.
    pub check_timeout: Duration,
    /// At most one WARN per this long about reads sent to the primary.
    pub warn_every: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            wait_for_lsn: Duration::from_millis(500),
            max_lag: Duration::from_secs(5),
            check_every: Duration::from_millis(500),
            check_timeout: Duration::from_secs(1),
            warn_every: Duration::from_secs(10),
        }
    }
}

/// What the last check learnt of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// No check has finished yet.
    Unknown,
    /// It did not answer, or it is not a standby (any more).
    Down { reason: String },
    /// It answered: how far it has replayed, and how far behind the primary that is.
    Up { replayed: Lsn, lag: Duration },
}

/// Why a read goes to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryBecause {
    /// No replica is configured.
    NoReplica,
    /// The replica has not been checked yet.
    ReplicaUnknown,
    ReplicaDown,
    ReplicaLagging,
    /// The client's LSN was not replayed within the wait.
    NotReplayedInTime,
    /// The read ran on the replica and lost its connection, or got none.
    ReplicaFailedTheRead,
}

impl PrimaryBecause {
    fn describe(self) -> &'static str {
        match self {
            PrimaryBecause::NoReplica => "no replica is configured",
            PrimaryBecause::ReplicaUnknown => "the replica has not been checked yet",
            PrimaryBecause::ReplicaDown => "the replica is down",
            PrimaryBecause::ReplicaLagging => "the replica lags beyond the bound",
            PrimaryBecause::NotReplayedInTime => {
                "the replica did not replay the client's LSN in time"
            }
            PrimaryBecause::ReplicaFailedTheRead => {
                "the read failed on the replica for want of a connection and ran again on the primary"
            }
        }
    }
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary(PrimaryBecause),
    Replica,
    /// The replica, once it has replayed this LSN (else the primary).
    WaitForReplica(Lsn),
}

/// The routing rule: `status` is `None` when no replica is configured; `after` is the LSN the
/// client must see, if it sent one.
pub fn route(status: Option<&ReplicaStatus>, after: Option<Lsn>, config: &ReplicaConfig) -> Route {
    match status {
        None => Route::Primary(PrimaryBecause::NoReplica),
        Some(ReplicaStatus::Unknown) => Route::Primary(PrimaryBecause::ReplicaUnknown),
        Some(ReplicaStatus::Down { .. }) => Route::Primary(PrimaryBecause::ReplicaDown),
        Some(ReplicaStatus::Up { lag, .. }) if *lag > config.max_lag => {
            Route::Primary(PrimaryBecause::ReplicaLagging)
        }
        Some(ReplicaStatus::Up { replayed, .. }) => match after {
            Some(lsn) if *replayed < lsn => Route::WaitForReplica(lsn),
            _ => Route::Replica,
        },
    }
}

/// The replica's lag in time, from samples of the primary's WAL position: the replica has
/// replayed everything the primary had written at the newest sample whose position it has
/// reached, so its lag is at most the age of that sample. When it has reached none of the
/// samples kept, the lag is at least the age of the oldest one.
#[derive(Debug, Clone)]
pub struct LagTracker {
    samples: VecDeque<(Instant, Lsn)>,
    keep: Duration,
}

impl LagTracker {
    /// Keeps samples for `keep` (longer than the lag bound, so "beyond the bound" can be seen).
    pub fn new(keep: Duration) -> Self {
        Self {
            samples: VecDeque::new(),
            keep,
        }
    }

    /// The primary was at `lsn` at `at`.
    pub fn primary_at(&mut self, at: Instant, lsn: Lsn) {
        self.samples.push_back((at, lsn));
        // Keep one sample older than the window, so that an unreached window shows its full age.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) > self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// The lag of a replica that has replayed up to `replayed`, as of `now`.
    pub fn lag(&self, now: Instant, replayed: Lsn) -> Duration {
        let reached = self
            .samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .or(self.samples.front());
        reached.map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }
}

/// Hands each read-only operation the connection it may use. Cheap to clone.
#[derive(Clone)]
pub struct ReadRouter {
    primary: DatabaseConnection,
    replica: Option<Arc<Replica>>,
}

struct Replica {
    db: DatabaseConnection,
    config: ReplicaConfig,
    status: Mutex<ReplicaStatus>,
    warnings: Mutex<Warnings>,
}

#[derive(Default)]
struct Warnings {
    last: Option<Instant>,
    suppressed: u64,
}

impl fmt::Debug for ReadRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadRouter")
            .field("replica", &self.replica.as_ref().map(|r| r.status()))
            .finish_non_exhaustive()
    }
}

impl ReadRouter {
    /// Every read on `primary`: what the application does without `DATABASE_REPLICA_URL`.
    pub fn primary_only(primary: DatabaseConnection) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads on `replica` when it may serve them. Starts the background check (on the current
    /// Tokio runtime); it ends when the last clone of the router is dropped.
    pub fn with_replica(
        primary: DatabaseConnection,
        replica: DatabaseConnection,
        config: ReplicaConfig,
    ) -> Self {
        let replica = Arc::new(Replica {
            db: replica,
            config,
            status: Mutex::new(ReplicaStatus::Unknown),
            warnings: Mutex::new(Warnings::default()),
        });
        tokio::spawn(watch(Arc::downgrade(&replica), primary.clone(), config));
        Self {
            primary,
            replica: Some(replica),
        }
    }

    /// The primary: for writes, and for anything that must not read a replica.
    pub fn primary(&self) -> &DatabaseConnection {
        &self.primary
    }

    /// Whether reads may go to a replica (so writes should hand back an LSN).
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// What the last check learnt of the replica; `None` without one.
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        self.replica.as_ref().map(|r| r.status())
    }

    /// The connection a read-only operation may use, for a client that must see `after` (the
    /// `x-read-after-lsn` of its last write) if it sent one. Sends no statement without a
    /// replica; with one, at most the polls of the wait for `after`. Private: reads go through
    /// [`read`](Self::read), which also recovers from a replica that fails them.
    async fn for_read(&self, after: Option<Lsn>) -> &DatabaseConnection {
        let Some(replica) = &self.replica else {
            return &self.primary;
        };
        let status = replica.status();
        match route(Some(&status), after, &replica.config) {
            Route::Replica => &replica.db,
            Route::WaitForReplica(lsn) => {
                if replica.wait_for(lsn).await {
                    &replica.db
                } else {
                    replica.fell_back(PrimaryBecause::NotReplayedInTime, &status);
                    &self.primary
                }
            }
            Route::Primary(because) => {
                replica.fell_back(because, &status);
                &self.primary
            }
        }
    }

    /// Runs the read-only `operation` on the connection [`for_read`](Self::for_read) chooses.
    /// When that is the replica and the operation fails there for want of a connection (the
    /// replica stopped or became unreachable since the last check), the replica is marked down
    /// at once, so that the reads after it go to the primary without waiting for the next
    /// check, and the operation runs again on the primary; the statements the replica was sent
    /// are marked retried in the SQL capture, as [`crate::retry`]'s are, so that the two runs
    /// never make a duplicate. Any other failure is returned as it is: a read the primary would
    /// refuse too is not run twice.
    pub async fn read<'a, T, Operation, Running>(
        &'a self,
        after: Option<Lsn>,
        operation: Operation,
    ) -> Result<T, ServiceError>
    where
        Operation: Fn(&'a DatabaseConnection) -> Running,
        Running: Future<Output = Result<T, ServiceError>>,
    {
        let chosen = self.for_read(after).await;
        let Some(replica) = self
            .replica
            .as_deref()
            .filter(|r| std::ptr::eq(chosen, &r.db))
        else {
            return operation(chosen).await;
        };
        // One attempt, as `crate::retry` runs them: if it is run again on the primary, what it
        // sent to the replica is marked retried, never a duplicate of the second run.
        let (outcome, on_the_replica) = sql_observe::attempt(operation(chosen)).await;
        match outcome {
            Err(error) if error.is_connectivity() => {
                on_the_replica.mark_retried();
                let status = ReplicaStatus::Down {
                    reason: format!("a read failed: {error}"),
                };
                replica.fell_back(PrimaryBecause::ReplicaFailedTheRead, &status);
                replica.set_status(status);
                operation(&self.primary).await
            }
            result => result,
        }
    }

    /// The primary's WAL position now, for a write's response once it has committed; `None`
    /// without a replica (nothing is sent then).
    pub async fn primary_lsn(&self) -> Result<Option<Lsn>, DbErr> {
        if self.replica.is_none() {
            return Ok(None);
        }
        current_lsn(&self.primary).await.map(Some)
    }
}

impl Replica {
    fn status(&self) -> ReplicaStatus {
        match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_status(&self, status: ReplicaStatus) {
        match self.status.lock() {
            Ok(mut current) => *current = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }

    /// Polls the replica until it has replayed `lsn` (true) or the wait is over (false).
    async fn wait_for(&self, lsn: Lsn) -> bool {
        let deadline = Instant::now() + self.config.wait_for_lsn;
        let mut pause = Duration::from_millis(1);
        loop {
            match replayed_at_least(&self.db, lsn).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "waiting on the replica failed");
                    return false;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Logs, rate-limited, that a read went to the primary although a replica is configured.
    fn fell_back(&self, because: PrimaryBecause, status: &ReplicaStatus) {
        // Before the first check there is nothing to warn about yet.
        if because == PrimaryBecause::ReplicaUnknown {
            return;
        }
        let now = Instant::now();
        let mut warnings = match self.warnings.lock() {
            Ok(warnings) => warnings,
            Err(poisoned) => poisoned.into_inner(),
        };
        let due = warnings
            .last
            .is_none_or(|last| now.duration_since(last) >= self.config.warn_every);
        if !due {
            warnings.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut warnings.suppressed);
        warnings.last = Some(now);
        drop(warnings);
        tracing::warn!(
            target: "mercado::replica",
            reason = because.describe(),
            replica = ?status,
            similar_reads_since_last_warning = suppressed,
            "a read went to the primary instead of the replica"
        );
    }
}

/// The background check: every `check_every`, the primary's position, then the replica's.
async fn watch(replica: Weak<Replica>, primary: DatabaseConnection, config: ReplicaConfig) {
    let mut lag = LagTracker::new(config.max_lag * 2);
    let mut was_usable = true;
    loop {
        let Some(replica) = replica.upgrade() else {
            return;
        };
        let started = Instant::now();
        if let Ok(Ok(lsn)) = tokio::time::timeout(config.check_timeout, current_lsn(&primary)).await
        {
            lag.primary_at(started, lsn);
        }
        let status =
            match tokio::time::timeout(config.check_timeout, standby_replay(&replica.db)).await {
                Err(_) => ReplicaStatus::Down {
                    reason: format!("no answer within {:?}", config.check_timeout),
                },
                Ok(Err(error)) => ReplicaStatus::Down {
                    reason: error.to_string(),
                },
                Ok(Ok(None)) => ReplicaStatus::Down {
                    reason: "not a standby (pg_is_in_recovery() is false)".to_owned(),
                },
                Ok(Ok(Some(replayed))) => ReplicaStatus::Up {
                    replayed,
                    lag: lag.lag(Instant::now(), replayed),
                },
            };
        let usable = route(Some(&status), None, &config) == Route::Replica;
        if usable != was_usable {
            if usable {
                tracing::info!(target: "mercado::replica", replica = ?status, "the replica serves reads again");
            } else {
                tracing::warn!(target: "mercado::replica", replica = ?status, "the replica serves no reads until it recovers; reads go to the primary");
            }
            was_usable = usable;
        }
        replica.set_status(status);
        drop(replica);
        tokio::time::sleep(config.check_every.saturating_sub(started.elapsed())).await;
    }
}

/// `pg_current_wal_lsn()` on the primary.
async fn current_lsn(db: &DatabaseConnection) -> Result<Lsn, DbErr> {
    let statement = Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_current_wal_lsn()::text AS lsn",
    );
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::Custom("pg_current_wal_lsn() returned no row".to_owned()))?;
    let text: String = row.try_get("", "lsn")?;
    text.parse().map_err(DbErr::Custom)
}

/// The replica's replay position, or `None` when it is not a standby.
async fn standby_replay(db: &DatabaseConnection) -> Result<Option<Lsn>, DbErr> {
    let statement = Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed",
    );
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::Custom("the replica check returned no row".to_owned()))?;
    let standby: bool = row.try_get("", "standby")?;
    let replayed: Option<String> = row.try_get("", "replayed")?;
    match (standby, replayed) {
        (true, Some(text)) => text.parse().map(Some).map_err(DbErr::Custom),
        _ => Ok(None),
    }
}

/// Whether the replica has replayed `lsn`, the LSN a bound parameter.
async fn replayed_at_least(db: &DatabaseConnection, lsn: Lsn) -> Result<bool, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false) AS replayed",
        [lsn.to_string().into()],
    );
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::Custom("the replay check returned no row".to_owned()))?;
    row.try_get("", "replayed")
}

/// Under `DATABASE_POOLER=pgbouncer-transaction` the statement timeout is the role's: warns at
/// start when the sessions PgBouncer hands out have none (`statement_timeout` is 0).
pub async fn warn_without_role_statement_timeout(db: &DatabaseConnection) -> Result<(), DbErr> {
    let statement = Statement::from_string(
        DbBackend::Postgres,
        "SELECT current_setting('statement_timeout') AS timeout",
    );
    let timeout: Option<String> = match db.query_one_raw(statement).await? {
        Some(row) => Some(row.try_get("", "timeout")?),
        None => None,
    };
    match timeout.as_deref() {
        Some("0") | None => tracing::warn!(
            target: "mercado",
            "DATABASE_POOLER=pgbouncer-transaction: the database role has no statement_timeout, \
             so statements run unbounded; set one with ALTER ROLE … SET statement_timeout"
        ),
        Some(timeout) => tracing::info!(
            target: "mercado",
            statement_timeout = timeout,
            "behind PgBouncer in transaction pooling; the statement timeout is the role's"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(replayed: u64, lag_ms: u64) -> ReplicaStatus {
        ReplicaStatus::Up {
            replayed: Lsn(replayed),
            lag: Duration::from_millis(lag_ms),
        }
    }

    #[tokio::test]
    async fn without_a_replica_the_router_sends_no_statement_and_hands_out_the_primary() {
        // A disconnected connection fails any statement: none is sent.
        let router = ReadRouter::primary_only(DatabaseConnection::default());
        assert!(!router.has_replica());
        assert_eq!(router.primary_lsn().await.unwrap(), None);
        let chosen = router.for_read(Some(Lsn(42))).await;
        assert!(std::ptr::eq(chosen, router.primary()));
        assert!(router.replica_status().is_none());
    }

    /// A router whose replica the last check found up, without the background check (so that
    /// nothing but the read under test changes its status). The replica's pool points at a
    /// port nothing listens on: it connects lazily and fails every acquire after 200 ms, as a
    /// replica stopped since that check would.
    async fn router_with_a_stopped_replica() -> ReadRouter {
        let primary = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut options = sea_orm::ConnectOptions::new(format!(
            "postgres://postgres@127.0.0.1:{closed_port}/postgres"
        ));
        options
            .connect_lazy(true)
            .acquire_timeout(Duration::from_millis(200))
            .sqlx_logging(false);
        let mut replica = sea_orm::Database::connect(options).await.unwrap();
        let mut primary = primary;
        sql_observe::install(&mut primary, sql_observe::ObserveConfig::default());
        sql_observe::install(&mut replica, sql_observe::ObserveConfig::default());
        ReadRouter {
            primary,
            replica: Some(Arc::new(Replica {
                db: replica,
                config: ReplicaConfig::default(),
                status: Mutex::new(up(100, 10)),
                warnings: Mutex::new(Warnings::default()),
            })),
        }
    }

    /// Which connections a read ran on, in order.
    #[derive(Default)]
    struct Attempts(Mutex<Vec<&'static str>>);

    impl Attempts {
        fn record(&self, router: &ReadRouter, db: &DatabaseConnection) {
            let on = if std::ptr::eq(db, router.primary()) {
                "primary"
            } else {
                "replica"
            };
            self.0.lock().unwrap().push(on);
        }

        fn taken(&self) -> Vec<&'static str> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn a_read_the_stopped_replica_cannot_serve_runs_again_on_the_primary_and_marks_it_down() {
        let router = router_with_a_stopped_replica().await;
        let attempts = Attempts::default();
        async fn select_one(db: &DatabaseConnection) -> Result<&'static str, ServiceError> {
            db.execute_unprepared("SELECT 1").await?;
            Ok("answered")
        }

        let answer = router
            .read(None, |db| {
                attempts.record(&router, db);
                select_one(db)
            })
            .await;

        assert_eq!(answer.unwrap(), "answered");
        assert_eq!(attempts.taken(), ["replica", "primary"]);
        assert!(
            matches!(router.replica_status(), Some(ReplicaStatus::Down { ref reason }) if reason.starts_with("a read failed")),
            "{:?}",
            router.replica_status()
        );
        // The next read goes straight to the primary, without waiting for the next check.
        router
            .read(None, |db| {
                attempts.record(&router, db);
                select_one(db)
            })
            .await
            .unwrap();
        assert_eq!(attempts.taken(), ["primary"]);
    }

    #[tokio::test]
    #[cfg_attr(
        not(mercado_postgres),
        ignore = "PostgreSQL is not configured: set TEST_POSTGRES_URL to run this test on it"
    )]
    async fn a_statement_the_replica_lost_is_marked_retried_and_makes_no_duplicate_with_its_rerun()
    {
        use mercado_testkit::{Backend, run};
        run(Backend::Postgres, |test_db| async move {
            // Two pools on one PostgreSQL database, told apart by their application name: on
            // "the-replica" the statement terminates its own backend, a connection lost
            // mid-statement; on the primary it selects nothing.
            let pool = |name: &str| {
                let mut options = sea_orm::ConnectOptions::new(test_db.url.clone());
                options.set_application_name(name).sqlx_logging(false);
                async move {
                    let mut db = sea_orm::Database::connect(options).await.unwrap();
                    sql_observe::install(&mut db, sql_observe::ObserveConfig::default());
                    db
                }
            };
            let router = ReadRouter {
                primary: pool("the-primary").await,
                replica: Some(Arc::new(Replica {
                    db: pool("the-replica").await,
                    config: ReplicaConfig::default(),
                    status: Mutex::new(up(100, 10)),
                    warnings: Mutex::new(Warnings::default()),
                })),
            };
            let terminate_if_replica = |db: &DatabaseConnection| {
                let db = db.clone();
                async move {
                    let statement = Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT pg_terminate_backend(pg_backend_pid()) AS killed \
                         WHERE current_setting('application_name') = 'the-replica'",
                    );
                    db.query_all_raw(statement).await?;
                    Ok::<_, ServiceError>(())
                }
            };

            let (answer, report) = sql_observe::scope(
                sql_observe::Scope::command("read"),
                router.read(None, terminate_if_replica),
            )
            .await;

            answer.unwrap();
            let shape: Vec<_> = report
                .statements
                .iter()
                .map(|s| (s.failed, s.retried))
                .collect();
            // the replica's run failed and is marked retried; the primary's answered
            assert_eq!(
                shape,
                [(true, true), (false, false)],
                "{:#?}",
                report.statements
            );
            assert!(report.findings.is_empty(), "{:#?}", report.findings);
            assert!(matches!(
                router.replica_status(),
                Some(ReplicaStatus::Down { .. })
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn a_read_the_replica_refuses_for_another_reason_is_not_run_again() {
        let router = router_with_a_stopped_replica().await;
        let attempts = Attempts::default();

        let answer: Result<(), ServiceError> = router
            .read(None, |db| {
                attempts.record(&router, db);
                async { Err(ServiceError::validation("id", "no such thing")) }
            })
            .await;

        assert!(matches!(answer, Err(ServiceError::Validation { .. })));
        assert_eq!(attempts.taken(), ["replica"]);
        assert_eq!(router.replica_status(), Some(up(100, 10)));
    }

    #[test]
    fn an_lsn_reads_and_prints_as_postgresql_shows_it() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn((0x16 << 32) | 0xB374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
    }

    #[test]
    fn text_that_is_not_an_lsn_is_refused() {
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "G/1",
            "1/2/3",
            "123456789/0",
            "-1/0",
            " 1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn without_a_replica_every_read_goes_to_the_primary() {
        let config = ReplicaConfig::default();
        assert_eq!(
            route(None, None, &config),
            Route::Primary(PrimaryBecause::NoReplica)
        );
        assert_eq!(
            route(None, Some(Lsn(7)), &config),
            Route::Primary(PrimaryBecause::NoReplica)
        );
    }

    #[test]
    fn a_healthy_replica_takes_reads_that_carry_no_lsn() {
        assert_eq!(
            route(Some(&up(100, 10)), None, &ReplicaConfig::default()),
            Route::Replica
        );
    }

    #[test]
    fn a_read_whose_lsn_the_replica_has_replayed_goes_to_the_replica_at_once() {
        let config = ReplicaConfig::default();
        assert_eq!(
            route(Some(&up(100, 10)), Some(Lsn(100)), &config),
            Route::Replica
        );
        assert_eq!(
            route(Some(&up(100, 10)), Some(Lsn(99)), &config),
            Route::Replica
        );
    }

    #[test]
    fn a_read_whose_lsn_is_ahead_of_the_replica_waits_for_it() {
        assert_eq!(
            route(
                Some(&up(100, 10)),
                Some(Lsn(101)),
                &ReplicaConfig::default()
            ),
            Route::WaitForReplica(Lsn(101))
        );
    }

    #[test]
    fn a_down_unchecked_or_lagging_replica_sends_reads_to_the_primary() {
        let config = ReplicaConfig::default();
        let down = ReplicaStatus::Down {
            reason: "connection refused".to_owned(),
        };
        assert_eq!(
            route(Some(&down), None, &config),
            Route::Primary(PrimaryBecause::ReplicaDown)
        );
        assert_eq!(
            route(Some(&ReplicaStatus::Unknown), Some(Lsn(1)), &config),
            Route::Primary(PrimaryBecause::ReplicaUnknown)
        );
        assert_eq!(
            route(Some(&up(100, 5_001)), None, &config),
            Route::Primary(PrimaryBecause::ReplicaLagging)
        );
        assert_eq!(route(Some(&up(100, 5_000)), None, &config), Route::Replica);
    }

    #[test]
    fn the_lag_is_the_age_of_the_newest_primary_position_the_replica_has_reached() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut lag = LagTracker::new(Duration::from_secs(10));
        lag.primary_at(at(0), Lsn(10));
        lag.primary_at(at(500), Lsn(20));
        lag.primary_at(at(1_000), Lsn(30));
        // replayed everything: no older than the last sample
        assert_eq!(lag.lag(at(1_100), Lsn(30)), Duration::from_millis(100));
        // replayed up to the second sample's position
        assert_eq!(lag.lag(at(1_100), Lsn(25)), Duration::from_millis(600));
        // reached none: at least as old as the oldest sample
        assert_eq!(lag.lag(at(1_100), Lsn(5)), Duration::from_millis(1_100));
    }

    #[test]
    fn an_idle_primary_makes_no_lag_however_old_its_last_write() {
        let start = Instant::now();
        let mut lag = LagTracker::new(Duration::from_secs(10));
        for step in 0..100 {
            lag.primary_at(start + Duration::from_millis(500 * step), Lsn(42));
        }
        let now = start + Duration::from_millis(500 * 99 + 10);
        assert_eq!(lag.lag(now, Lsn(42)), Duration::from_millis(10));
    }

    #[test]
    fn a_replica_stuck_for_longer_than_the_window_shows_at_least_the_window() {
        let start = Instant::now();
        let mut lag = LagTracker::new(Duration::from_secs(10));
        for step in 0..60 {
            lag.primary_at(start + Duration::from_millis(500 * step), Lsn(100 + step));
        }
        let now = start + Duration::from_millis(500 * 59);
        assert!(lag.lag(now, Lsn(50)) >= Duration::from_secs(10));
    }
}
