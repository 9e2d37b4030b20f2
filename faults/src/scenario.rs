//! One fault test from start to end: a throwaway server, Mercado over it, the data arranged,
//! the load, the fault (written by the test), recovery, resending, the invariants and the
//! record of figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;
use tokio::sync::{Mutex, MutexGuard};

use crate::app::Mercado;
use crate::invariants::{self, Check};
use crate::load::{
    DEADLINE, Fixture, Kind, LoadHandle, LoadPlan, LoadResult, Probe, RequestRecord, Resend,
};
use crate::pg::PgInstance;
use crate::report::{self, Failures, FaultRecord, Latency, Readyz, Resent, ResentKind, Target};

/// The longest Mercado may take to recover after a fault before the test fails.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

/// The application name of Mercado's pool (its default), whose backends the tests kill.
pub const APP_NAME: &str = "mercado";

/// The targets, recorded by every test and asserted under `FAULTS_STRICT=1`. Mercado
/// meets them since it retries lost connections transparently and fails fast only past its
/// outage bound; they stay opt-in so that a loaded CI machine records a miss rather than fails.
pub mod targets {
    /// Failed reads allowed for backend kills and short outages.
    pub const FAILED_READS: u64 = 0;
    /// Failed keyed writes (orders, deposits and transfers, which all carry an
    /// `Idempotency-Key`) allowed for backend kills and short outages.
    pub const FAILED_KEYED_WRITES: u64 = 0;
    /// Failures answered otherwise than 503 with `Retry-After` (a 500, a 503 without it, …).
    pub const ANSWERS_NOT_503_RETRY_AFTER: u64 = 0;
    /// The outage a stop or a crash of the server makes in these tests, which the targets above
    /// treat as short: Mercado is to ride it out without errors.
    pub const SHORT_OUTAGE: std::time::Duration = std::time::Duration::from_secs(3);
}

/// Whether `FAULTS_STRICT=1`: the targets become assertions.
pub fn strict() -> bool {
    std::env::var("FAULTS_STRICT").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// What a test is.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `mercado` binary to run when `MERCADO_BIN` does not name one.
    pub binary: PathBuf,
    pub fault: &'static str,
    pub description: &'static str,
    pub order: u32,
    /// Mercado's settings beyond the suite's defaults, as environment variables.
    pub settings: Vec<(&'static str, &'static str)>,
    /// How many load clients the data is arranged for.
    pub clients: usize,
    /// Whether the zero-failure targets apply (backend kills, short outages).
    pub zero_failure_targets: bool,
    /// How many restarts of Mercado the test makes itself (1 after its own SIGKILL).
    pub expected_restarts: u32,
}

impl Spec {
    pub fn new(
        binary: impl Into<PathBuf>,
        fault: &'static str,
        description: &'static str,
        order: u32,
    ) -> Spec {
        Spec {
            binary: binary.into(),
            fault,
            description,
            order,
            settings: Vec::new(),
            clients: 8,
            zero_failure_targets: false,
            expected_restarts: 0,
        }
    }
}

/// When the fault was, from the start of the load.
#[derive(Debug, Clone, Copy)]
pub struct FaultWindow {
    pub start: Duration,
    pub end: Duration,
    /// The instant of `end`, from which recovery is timed.
    end_instant: Instant,
}

/// Only one fault test runs at a time, even without `--test-threads=1`: each makes a server and
/// a Mercado and loads them, and the figures mean nothing when two share two cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A running test: its server, its Mercado and its data.
#[derive(Debug)]
pub struct Scenario {
    spec: Spec,
    // Field order is drop order: Mercado is killed before its server is.
    pub app: Mercado,
    pub pg: PgInstance,
    pub fixture: Fixture,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Scenario {
    /// Make the server, start Mercado over it and arrange the data through the API.
    pub async fn start(spec: Spec) -> anyhow::Result<Scenario> {
        let serial = SERIAL.lock().await;
        let started = Instant::now();
        let bin = Mercado::binary(&spec.binary)?;
        let pg = PgInstance::start_new().await?;
        let app = Mercado::start(bin, pg.database_url(), pg.dir(), &spec.settings).await?;
        let fixture = Fixture::arrange(&app.base_url(), spec.clients)
            .await
            .with_context(|| format!("arranging data; mercado's log:\n{}", app.log_tail(20)))?;
        Ok(Scenario {
            spec,
            app,
            pg,
            fixture,
            started,
            _serial: serial,
        })
    }

    /// Start the load (seeded by `FAULTS_SEED`, default 1).
    pub fn load(&self, plan: LoadPlan) -> anyhow::Result<LoadHandle> {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        LoadHandle::start(plan, &self.fixture, seed)
    }

    /// Mark the fault's start, now.
    pub fn fault_begins(&self, load: &LoadHandle) -> Duration {
        load.now()
    }

    /// Mark the fault's end, now.
    pub fn fault_ends(&self, load: &LoadHandle, start: Duration) -> FaultWindow {
        FaultWindow {
            start,
            end: load.now(),
            end_instant: Instant::now(),
        }
    }

    /// Wait until `/readyz` answers 200 and an authenticated read succeeds, at most
    /// [`RECOVERY_LIMIT`]; the time it took from the fault's end, or None.
    pub async fn await_recovery(&self, window: &FaultWindow) -> Option<Duration> {
        let Ok(api) = crate::load::Api::new(&self.app.base_url(), Duration::from_secs(2)) else {
            return None;
        };
        let probe = self.fixture.clients.first()?;
        let path = format!(
            "/conversations/{}/messages?limit=1",
            self.fixture.conversation_id
        );
        let limit = Instant::now() + RECOVERY_LIMIT;
        while Instant::now() < limit {
            if self.app.ready().await {
                let read = api.get(&path, &probe.token).send().await;
                if read.is_ok_and(|r| r.status().is_success()) {
                    return Some(window.end_instant.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Everything after the fault's end: wait for recovery ([`Scenario::await_recovery`]), let
    /// the load run out, and [`Scenario::conclude`].
    pub async fn recover_and_conclude(
        self,
        plan: LoadPlan,
        load: LoadHandle,
        window: FaultWindow,
    ) -> anyhow::Result<FaultRecord> {
        let recovered = self.await_recovery(&window).await;
        let result = load.finish().await?;
        self.conclude(plan, result, window, recovered).await
    }

    /// Resend the failed keyed writes, check every invariant, write the record (to
    /// `FAULTS_REPORT_DIR` when set) and fail if an invariant did not hold — or, under
    /// `FAULTS_STRICT=1`, if a target was missed.
    pub async fn conclude(
        mut self,
        plan: LoadPlan,
        load: LoadResult,
        window: FaultWindow,
        recovered: Option<Duration>,
    ) -> anyhow::Result<FaultRecord> {
        let LoadResult { records, readyz } = load;
        let resends = if recovered.is_some() {
            crate::load::resend_failed_writes(&records, &self.fixture).await?
        } else {
            Vec::new()
        };
        let mut db = self.pg.admin().await?;
        let mut checks = invariants::check(&mut db, &self.fixture, &records, &resends).await?;
        let mut exactly_one = Vec::new();
        for resend in resends.iter().filter(|r| r.acknowledged) {
            if invariants::rows_with_key(&mut db, resend.kind, resend.user, &resend.key).await? == 1
            {
                exactly_one.push(resend.kind);
            }
        }
        db.close().await.ok();
        checks.push(no_request_outlived_its_deadline(&records));
        checks.push(self.mercado_recovered(recovered));

        let run = Run {
            plan,
            records: &records,
            readyz: &readyz,
            resends: &resends,
            exactly_one: &exactly_one,
            window,
            recovered,
        };
        let record = self.figures(&run, checks);
        eprintln!("{}", summary(&record));
        if let Ok(dir) = std::env::var("FAULTS_REPORT_DIR")
            && !dir.is_empty()
        {
            let dir = PathBuf::from(dir);
            record.write_to(&dir)?;
            write_requests(
                &dir.join(format!("{}.requests.csv", self.spec.fault)),
                &records,
            )?;
        }
        let broken: Vec<String> = record
            .invariants
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !broken.is_empty() {
            bail!(
                "{}: {} invariant(s) broken:\n  {}\nmercado's last warnings:\n{}",
                self.spec.fault,
                broken.len(),
                broken.join("\n  "),
                self.warnings(15)
            );
        }
        let missed: Vec<String> = record
            .targets
            .iter()
            .filter(|t| !t.met)
            .map(|t| format!("{} = {} (target ≤ {})", t.name, t.actual, t.limit))
            .collect();
        if record.strict && !missed.is_empty() {
            bail!(
                "{}: FAULTS_STRICT=1 and targets missed: {}",
                self.spec.fault,
                missed.join(", ")
            );
        }
        Ok(record)
    }

    fn mercado_recovered(&mut self, recovered: Option<Duration>) -> Check {
        let restarts = self.app.restarts();
        let running = self.app.is_running();
        let expected = self.spec.expected_restarts;
        let name = if expected == 0 {
            "Mercado recovered by itself, without a restart"
        } else {
            "Mercado recovered after its own restart, and only that"
        };
        let passed = recovered.is_some() && running && restarts == expected;
        let detail = match recovered {
            Some(after) => format!(
                "ready and answering {} ms after the fault; {restarts} restart(s); running: {running}",
                after.as_millis()
            ),
            None => format!(
                "not recovered within {RECOVERY_LIMIT:?}; {restarts} restart(s); running: {running}"
            ),
        };
        Check::holds(name, passed, detail)
    }

    /// The last `lines` WARN or ERROR lines of Mercado's log.
    fn warnings(&self, lines: usize) -> String {
        let all = self.app.log_tail(5_000);
        let found: Vec<&str> = all
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        found[found.len().saturating_sub(lines)..].join("\n")
    }

    fn figures(&self, run: &Run<'_>, checks: Vec<Check>) -> FaultRecord {
        let Run {
            plan,
            records,
            readyz,
            resends,
            exactly_one,
            window,
            recovered,
        } = *run;
        let mut failures = Failures::default();
        for r in records.iter().filter(|r| !r.acked()) {
            match r.kind {
                Kind::Read => failures.reads += 1,
                Kind::Order => failures.orders += 1,
                Kind::Deposit => failures.deposits += 1,
                Kind::Transfer => failures.transfers += 1,
            }
            let answer = match (r.status, &r.code, &r.error) {
                (Some(status), Some(code), _) => format!("{status} {code}"),
                (Some(status), None, _) => format!("{status} (no problem body)"),
                (None, _, _) if r.not_delivered => "not sent (no connection)".to_owned(),
                (None, _, Some(error)) => {
                    format!("no answer ({})", error.split(':').next().unwrap_or("?"))
                }
                (None, _, None) => "no answer".to_owned(),
            };
            *failures.by_answer.entry(answer).or_default() += 1;
            if r.status.is_none() {
                failures.unanswered += 1;
            } else if r.retry_after {
                failures.with_retry_after += 1;
            }
        }
        let window_end = window.end + recovered.unwrap_or(plan.duration);
        let during = latency(
            records
                .iter()
                .filter(|r| r.start >= window.start && r.start <= window_end),
        );
        let before = latency(records.iter().filter(|r| r.start < window.start));
        let probes: Vec<&Probe> = readyz
            .iter()
            .filter(|p| p.start >= window.start && p.start <= window_end)
            .collect();
        let readyz_during_fault = Readyz {
            probes: probes.len(),
            ready: probes.iter().filter(|p| p.status == Some(200)).count(),
            not_ready: probes
                .iter()
                .filter(|p| p.status.is_some_and(|s| s != 200))
                .count(),
            unanswered: probes.iter().filter(|p| p.status.is_none()).count(),
            max_ms: probes.iter().map(|p| millis(p.latency)).fold(0.0, f64::max),
        };
        let answered_badly = records
            .iter()
            .filter(|r| {
                r.status.is_some() && !r.acked() && !(r.status == Some(503) && r.retry_after)
            })
            .count();

        let mut targets = Vec::new();
        if self.spec.zero_failure_targets {
            targets.push(target(
                "failed reads",
                targets::FAILED_READS,
                failures.reads,
            ));
            targets.push(target(
                "failed keyed writes",
                targets::FAILED_KEYED_WRITES,
                failures.keyed_writes(),
            ));
        }
        targets.push(target(
            "failures answered otherwise than 503 + Retry-After",
            targets::ANSWERS_NOT_503_RETRY_AFTER,
            answered_badly,
        ));

        let resent_of = |kind: Kind| {
            let of_kind = || resends.iter().filter(move |r| r.kind == kind);
            ResentKind {
                resent: of_kind().count(),
                acknowledged: of_kind().filter(|r| r.acknowledged).count(),
                attempts: of_kind().map(|r| r.attempts).sum(),
                exactly_one: exactly_one.iter().filter(|k| **k == kind).count(),
            }
        };
        let resent = Resent {
            orders: resent_of(Kind::Order),
            deposits: resent_of(Kind::Deposit),
            transfers: resent_of(Kind::Transfer),
        };
        let acknowledged = records.iter().filter(|r| r.acked()).count();
        let passed = checks.iter().all(|c| c.passed);
        FaultRecord {
            fault: self.spec.fault.to_owned(),
            description: self.spec.description.to_owned(),
            order: self.spec.order,
            settings: self
                .spec
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            clients: plan.clients,
            load_seconds: plan.duration.as_secs_f64(),
            requests: records.len(),
            acknowledged,
            failed: records.len() - acknowledged,
            failures,
            deadline_exceeded: records.iter().filter(|r| r.deadline_exceeded).count(),
            resent,
            fault_window_s: (
                round3(window.start.as_secs_f64()),
                round3(window.end.as_secs_f64()),
            ),
            during_fault: during,
            before_fault: before,
            readyz_during_fault,
            time_to_recover_ms: recovered.map(millis),
            mercado_restarts: self.app.restarts(),
            invariants: checks,
            targets,
            strict: strict(),
            passed,
            test_seconds: round3(self.started.elapsed().as_secs_f64()),
        }
    }
}

/// What a run measured, for its figures.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    plan: LoadPlan,
    records: &'a [RequestRecord],
    readyz: &'a [Probe],
    resends: &'a [Resend],
    /// The kind of each acknowledged resend whose key then held exactly one row.
    exactly_one: &'a [Kind],
    window: FaultWindow,
    recovered: Option<Duration>,
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn target(name: &str, limit: u64, actual: usize) -> Target {
    let actual = actual as u64;
    Target {
        name: name.to_owned(),
        limit,
        actual,
        met: actual <= limit,
    }
}

fn latency<'a>(records: impl Iterator<Item = &'a RequestRecord>) -> Latency {
    let mut values: Vec<f64> = records.map(|r| millis(r.latency)).collect();
    let requests = values.len();
    let p50_ms = report::percentile(&mut values, 50.0);
    let p99_ms = report::percentile(&mut values, 99.0);
    let max_ms = values.last().copied().unwrap_or(0.0);
    Latency {
        requests,
        p50_ms,
        p99_ms,
        max_ms,
    }
}

/// No request took [`DEADLINE`] or longer (the client gave up on it).
pub fn no_request_outlived_its_deadline(records: &[RequestRecord]) -> Check {
    let late: Vec<String> = records
        .iter()
        .filter(|r| r.deadline_exceeded || r.latency >= DEADLINE)
        .map(|r| {
            format!(
                "{:?} {} sent at {:.2} s took {} ms",
                r.kind,
                r.key.as_deref().unwrap_or(""),
                r.start.as_secs_f64(),
                r.latency.as_millis()
            )
        })
        .collect();
    let slowest = records.iter().map(|r| r.latency).max().unwrap_or_default();
    Check::new(
        "no request outlived its deadline",
        &late,
        format!(
            "{} requests, the slowest {} ms, deadline {} ms",
            records.len(),
            slowest.as_millis(),
            DEADLINE.as_millis()
        ),
    )
}

/// Every request of the run, one CSV line each, for a closer look than the figures give.
fn write_requests(path: &std::path::Path, records: &[RequestRecord]) -> anyhow::Result<()> {
    let mut text = String::from(
        "client,kind,key,start_ms,latency_ms,status,code,write,acked,retry_after,error\n",
    );
    for r in records {
        let kind = format!("{:?}", r.kind).to_lowercase();
        let error = r
            .error
            .as_deref()
            .unwrap_or("")
            .replace([',', '\n', '"'], " ");
        text.push_str(&format!(
            "{},{kind},{},{:.1},{:.1},{},{},{},{},{},{error}\n",
            r.client,
            r.key.as_deref().unwrap_or(""),
            r.start.as_secs_f64() * 1000.0,
            r.latency.as_secs_f64() * 1000.0,
            r.status.map_or(String::new(), |s| s.to_string()),
            r.code.as_deref().unwrap_or(""),
            r.is_write(),
            r.acked(),
            r.retry_after,
        ));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A few lines for the test's output.
fn summary(r: &FaultRecord) -> String {
    let resent = r.resent.total();
    let mut out = format!(
        "[{}] {}: {} requests, {} failed (reads {}, keyed writes {}: orders {}, deposits {}, \
         transfers {}; unanswered {}), resent {} (orders {}, deposits {}, transfers {}) → {} \
         acknowledged, {} holding one row; p99 during fault {:.0} ms (max {:.0} ms); \
         recovered in {}",
        r.fault,
        r.description,
        r.requests,
        r.failed,
        r.failures.reads,
        r.failures.keyed_writes(),
        r.failures.orders,
        r.failures.deposits,
        r.failures.transfers,
        r.failures.unanswered,
        resent.resent,
        r.resent.orders.resent,
        r.resent.deposits.resent,
        r.resent.transfers.resent,
        resent.acknowledged,
        resent.exactly_one,
        r.during_fault.p99_ms,
        r.during_fault.max_ms,
        r.time_to_recover_ms
            .map_or("never".to_owned(), |ms| format!("{ms:.0} ms")),
    );
    let z = &r.readyz_during_fault;
    out.push_str(&format!(
        "\n    /readyz during the fault: {} probes, {} × 200, {} × 503, {} unanswered, slowest {:.0} ms",
        z.probes, z.ready, z.not_ready, z.unanswered, z.max_ms
    ));
    for (answer, count) in &r.failures.by_answer {
        out.push_str(&format!("\n    {count} × {answer}"));
    }
    for check in &r.invariants {
        out.push_str(&format!(
            "\n  {} {}: {}",
            if check.passed { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        ));
    }
    for t in &r.targets {
        out.push_str(&format!(
            "\n  target {}: {} ≤ {} {}",
            if t.met { "met   " } else { "missed" },
            t.name,
            t.limit,
            t.actual
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(latency: Duration, deadline_exceeded: bool) -> RequestRecord {
        RequestRecord {
            client: 0,
            kind: Kind::Read,
            key: None,
            start: Duration::ZERO,
            latency,
            status: (!deadline_exceeded).then_some(200),
            code: None,
            error: None,
            deadline_exceeded,
            not_delivered: false,
            retry_after: false,
            write: None,
        }
    }

    #[test]
    fn a_request_that_outlived_its_deadline_fails_the_check() {
        let fast = read(Duration::from_millis(3), false);
        assert!(no_request_outlived_its_deadline(std::slice::from_ref(&fast)).passed);
        assert!(!no_request_outlived_its_deadline(&[fast.clone(), read(DEADLINE, true)]).passed);
        assert!(!no_request_outlived_its_deadline(&[fast, read(DEADLINE, false)]).passed);
    }
}
