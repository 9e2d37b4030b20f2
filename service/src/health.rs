//! Whether the database can be reached, as a guard that lets requests fail fast while it cannot.
//!
//! A lost connection on its own says little: `pg_terminate_backend`, a restart or a failover
//! each break the pool's connections, and the next attempt on a fresh one usually succeeds
//! ([`crate::retry`] makes it). What matters is whether *new* connections can be made. So a sign
//! of trouble — a connection lost, no connection to be had — only wakes a background probe,
//! which opens a fresh connection of its own (outside the pool, so a busy pool is never taken
//! for a dead server) every [`PROBE_INTERVAL`], each bounded by [`PROBE_TIMEOUT`]:
//!
//! * while probes fail for less than **the bound** — the pool's acquire timeout
//!   (`DATABASE_ACQUIRE_TIMEOUT`, 5 s by default), the longest a request waits for a connection
//!   anyway — nothing changes: requests wait for a connection and retry, and a short blip (a
//!   restart, a crash and its recovery) is ridden out without errors;
//! * once probes have failed for the bound, the database is [`Phase::Down`]: requests are
//!   answered 503 with `Retry-After` at once instead of each waiting out the acquire timeout,
//!   retries stop, and `/readyz` reports not ready;
//! * the first probe that connects makes it [`Phase::Up`] again, by itself.
//!
//! SQLite is a file, not a server: it has no guard ([`DatabaseHealth::disabled`]).
//!
//! The guard reaches the service's operations through a task-local ([`watching`]): the HTTP
//! layer runs each request inside it, so that the retry loop can report what it sees and stop
//! retrying once the database is known to be down, without every operation taking the guard as
//! a parameter. Outside it (the command-line tools) nothing reports and nothing is down.

use std::{
    fmt,
    future::Future,
    str::FromStr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use sea_orm::{DbBackend, sqlx};
// tokio's clock: the same as std's, but one that tests can pause.
use tokio::{sync::Notify, time::Instant};

use crate::db::DatabaseSettings;

/// How often a failing database is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one probe may take to connect.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the guard knows of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reachable, as far as anyone knows.
    Up,
    /// Probes have failed since `since`, for less than the bound: requests still go through.
    Suspect { since: Instant },
    /// Probes have failed since `since`, for the bound or longer: requests fail fast.
    Down { since: Instant },
}

impl Phase {
    /// The phase after a probe at `now` that did (`reached`) or did not connect.
    pub fn after_probe(self, reached: bool, now: Instant, bound: Duration) -> Phase {
        match (self, reached) {
            (_, true) => Phase::Up,
            (Phase::Up, false) => {
                if bound.is_zero() {
                    Phase::Down { since: now }
                } else {
                    Phase::Suspect { since: now }
                }
            }
            (Phase::Suspect { since }, false) if now.duration_since(since) >= bound => {
                Phase::Down { since }
            }
            (phase, false) => phase,
        }
    }
}

/// Opens (and closes) a fresh connection; `Err` says why it could not.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The guard: cheap to clone, shared by every request of an application.
#[derive(Clone)]
pub struct DatabaseHealth {
    inner: Arc<Inner>,
}

struct Inner {
    bound: Duration,
    probe: Option<Probe>,
    phase: Mutex<Phase>,
    wake: Notify,
    prober_started: AtomicBool,
}

impl fmt::Debug for DatabaseHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseHealth")
            .field("bound", &self.inner.bound)
            .field("enabled", &self.inner.probe.is_some())
            .field("phase", &self.phase())
            .finish()
    }
}

impl DatabaseHealth {
    /// The guard for the database `settings` name, with the acquire timeout as its bound;
    /// disabled for SQLite.
    pub fn watch(settings: &DatabaseSettings) -> DatabaseHealth {
        let probe = match settings.backend() {
            Some(DbBackend::Postgres) => postgres_probe(settings),
            Some(DbBackend::MySql) => mysql_probe(settings),
            _ => None,
        };
        DatabaseHealth::new(settings.acquire_timeout, probe)
    }

    /// A guard that never probes and never reports the database down.
    pub fn disabled() -> DatabaseHealth {
        DatabaseHealth::new(DatabaseSettings::default().acquire_timeout, None)
    }

    /// A guard with this bound and probe (tests give one of their own).
    pub fn new(bound: Duration, probe: Option<Probe>) -> DatabaseHealth {
        DatabaseHealth {
            inner: Arc::new(Inner {
                bound,
                probe,
                phase: Mutex::new(Phase::Up),
                wake: Notify::new(),
                prober_started: AtomicBool::new(false),
            }),
        }
    }

    /// How long the database may be unreachable before requests fail fast.
    pub fn bound(&self) -> Duration {
        self.inner.bound
    }

    pub fn phase(&self) -> Phase {
        *self.inner.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether requests should fail fast now.
    pub fn is_down(&self) -> bool {
        matches!(self.phase(), Phase::Down { .. })
    }

    /// A sign that the database may be unreachable: wakes the probe (started on the first
    /// report). Changes nothing by itself.
    pub fn report_trouble(&self) {
        if self.inner.probe.is_none() {
            return;
        }
        if !self.inner.prober_started.swap(true, Ordering::SeqCst) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                self.inner.prober_started.store(false, Ordering::SeqCst);
                return;
            };
            runtime.spawn(prober(Arc::downgrade(&self.inner)));
        }
        self.inner.wake.notify_one();
    }
}

/// Probes whenever woken, until a probe connects; ends when the guard is dropped.
async fn prober(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let notified = async { strong.wake.notified().await };
        // Waiting holds the guard alive only while it is referenced elsewhere too: check now
        // and then whether it still is.
        let woken = tokio::time::timeout(Duration::from_secs(5), notified).await;
        drop(strong);
        if woken.is_err() {
            continue;
        }
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let Some(probe) = strong.probe.clone() else {
                return;
            };
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no connection within {PROBE_TIMEOUT:?}")),
            };
            let now = Instant::now();
            let (before, after) = {
                let mut phase = strong.phase.lock().unwrap_or_else(|e| e.into_inner());
                let before = *phase;
                *phase = before.after_probe(outcome.is_ok(), now, strong.bound);
                (before, *phase)
            };
            log_change(before, after, now, strong.bound, outcome.as_ref().err());
            if after == Phase::Up {
                break;
            }
            drop(strong);
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

fn log_change(before: Phase, after: Phase, now: Instant, bound: Duration, why: Option<&String>) {
    match (before, after) {
        (Phase::Up, Phase::Suspect { .. }) => tracing::warn!(
            error = why.map(String::as_str),
            "a fresh connection to the database failed; requests wait and retry, up to {bound:?}"
        ),
        (Phase::Up | Phase::Suspect { .. }, Phase::Down { since }) => tracing::error!(
            unreachable_ms = now.duration_since(since).as_millis() as u64,
            error = why.map(String::as_str),
            "the database has been unreachable for longer than {bound:?}: failing requests fast \
             with 503 until a probe connects"
        ),
        (Phase::Suspect { since } | Phase::Down { since }, Phase::Up) => tracing::warn!(
            unreachable_ms = now.duration_since(since).as_millis() as u64,
            "the database is reachable again"
        ),
        _ => {}
    }
}

fn postgres_probe(settings: &DatabaseSettings) -> Option<Probe> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let options = sqlx::postgres::PgConnectOptions::from_str(settings.url.expose_secret()).ok()?;
    // The probe must connect as the pool does: behind PgBouncer, a startup parameter it does
    // not know makes every probe fail, and the guard would keep the process down for good.
    let options = crate::db::without_unknown_startup_parameters(settings.pooler, options)
        .application_name(&format!("{}-health", settings.application_name))
        .disable_statement_logging();
    Some(Arc::new(move || {
        let options = options.clone();
        Box::pin(async move {
            let connection = options.connect().await.map_err(|e| e.to_string())?;
            let _ = connection.close().await;
            Ok(())
        })
    }))
}

fn mysql_probe(settings: &DatabaseSettings) -> Option<Probe> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let options = sqlx::mysql::MySqlConnectOptions::from_str(settings.url.expose_secret())
        .ok()?
        .disable_statement_logging();
    Some(Arc::new(move || {
        let options = options.clone();
        Box::pin(async move {
            let connection = options.connect().await.map_err(|e| e.to_string())?;
            let _ = connection.close().await;
            Ok(())
        })
    }))
}

tokio::task_local! {
    static CURRENT: DatabaseHealth;
}

/// Runs `work` (a request) with `health` as the guard its operations report to.
pub async fn watching<F: Future>(health: DatabaseHealth, work: F) -> F::Output {
    CURRENT.scope(health, work).await
}

/// Reports trouble to the current guard, if any.
pub(crate) fn report_trouble() {
    let _ = CURRENT.try_with(DatabaseHealth::report_trouble);
}

/// Whether the current guard, if any, says the database is down.
pub(crate) fn is_down() -> bool {
    CURRENT.try_with(DatabaseHealth::is_down).unwrap_or(false)
}

/// The current guard's bound, if there is a guard.
pub(crate) fn current_bound() -> Option<Duration> {
    CURRENT.try_with(DatabaseHealth::bound).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    #[test]
    fn a_failed_probe_makes_the_database_suspect_not_down() {
        let now = Instant::now();
        assert_eq!(
            Phase::Up.after_probe(false, now, BOUND),
            Phase::Suspect { since: now }
        );
    }

    #[test]
    fn probes_failing_for_less_than_the_bound_keep_it_suspect() {
        let start = Instant::now();
        let phase = Phase::Suspect { since: start };
        let later = start + BOUND - Duration::from_millis(1);
        assert_eq!(phase.after_probe(false, later, BOUND), phase);
    }

    #[test]
    fn probes_failing_for_the_bound_make_it_down() {
        let start = Instant::now();
        let phase = Phase::Suspect { since: start };
        assert_eq!(
            phase.after_probe(false, start + BOUND, BOUND),
            Phase::Down { since: start }
        );
    }

    #[test]
    fn one_probe_that_connects_makes_it_up_from_any_phase() {
        let now = Instant::now();
        for phase in [
            Phase::Up,
            Phase::Suspect { since: now },
            Phase::Down { since: now },
        ] {
            assert_eq!(phase.after_probe(true, now, BOUND), Phase::Up);
        }
    }

    /// A probe whose answers the test switches.
    fn switchable(reachable: Arc<AtomicBool>, calls: Arc<AtomicU32>) -> Probe {
        Arc::new(move || {
            let reachable = reachable.load(Ordering::SeqCst);
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if reachable {
                    Ok(())
                } else {
                    Err("connection refused".to_owned())
                }
            })
        })
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_probed_until_trouble_is_reported() {
        let calls = Arc::new(AtomicU32::new(0));
        let health = DatabaseHealth::new(
            BOUND,
            Some(switchable(Arc::new(AtomicBool::new(false)), calls.clone())),
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(health.phase(), Phase::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blip_shorter_than_the_bound_never_makes_it_down() {
        let reachable = Arc::new(AtomicBool::new(false));
        let health =
            DatabaseHealth::new(BOUND, Some(switchable(reachable.clone(), Arc::default())));
        health.report_trouble();
        settle().await;
        assert!(matches!(health.phase(), Phase::Suspect { .. }));
        tokio::time::sleep(BOUND - Duration::from_secs(1)).await;
        assert!(!health.is_down());
        reachable.store(true, Ordering::SeqCst);
        tokio::time::sleep(PROBE_INTERVAL * 2).await;
        assert_eq!(health.phase(), Phase::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_bound_makes_it_down_until_a_probe_connects() {
        let reachable = Arc::new(AtomicBool::new(false));
        let health =
            DatabaseHealth::new(BOUND, Some(switchable(reachable.clone(), Arc::default())));
        health.report_trouble();
        tokio::time::sleep(BOUND + PROBE_INTERVAL * 2).await;
        assert!(health.is_down());
        reachable.store(true, Ordering::SeqCst);
        tokio::time::sleep(PROBE_INTERVAL * 2).await;
        assert_eq!(health.phase(), Phase::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_guard_is_never_down() {
        let health = DatabaseHealth::disabled();
        health.report_trouble();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!health.is_down());
    }

    #[tokio::test]
    async fn operations_see_the_guard_they_run_under_and_none_outside_it() {
        let health = DatabaseHealth::new(Duration::from_secs(7), None);
        assert_eq!(current_bound(), None);
        let seen = watching(health, async { current_bound() }).await;
        assert_eq!(seen, Some(Duration::from_secs(7)));
    }
}
