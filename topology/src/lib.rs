//! The scale-out topology of `scripts/cluster`, as its tests see it: a black box reached over
//! HTTP through the balancer, and over SQL on the primary, PgBouncer and the replica. It depends
//! on no crate of ours.
//!
//! The tests need a running cluster and are ignored otherwise; `scripts/topology-test` builds the
//! release binary, brings the cluster up, runs them with `--ignored` and always takes the
//! cluster down again. To run them against a cluster of your own:
//!
//! ```sh
//! cargo build --release -p mercado && scripts/cluster up
//! TOPOLOGY_BASE_PORT=55400 cargo test -p mercado-topology -- --ignored --test-threads=4
//! ```
//!
//! Environment: `TOPOLOGY_BASE_PORT` (the cluster's `CLUSTER_BASE_PORT`, 55400 by default in
//! `scripts/cluster`; required), `TOPOLOGY_CLUSTER_DIR` (the cluster's state directory, for the
//! API processes' pid files; default `target/cluster`), `TOPOLOGY_CLUSTER_SCRIPT` (the
//! `scripts/cluster` a test runs `up` with to heal what it broke), `MERCADO_BIN` (the binary the
//! PgBouncer 1.18 test starts), `CLUSTER_PGBOUNCER_POOL` (PgBouncer's pool size, default 4).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};

/// The API processes behind the balancer.
pub const APPS: u16 = 3;

/// Where everything of the cluster listens, from `TOPOLOGY_BASE_PORT`.
#[derive(Debug, Clone)]
pub struct Topology {
    pub base_port: u16,
    pub cluster_dir: PathBuf,
    pub cluster_script: Option<PathBuf>,
}

impl Topology {
    /// The cluster the environment names; an error (which fails the test) when none is named.
    pub fn from_env() -> anyhow::Result<Topology> {
        let base_port: u16 = std::env::var("TOPOLOGY_BASE_PORT")
            .context(
                "TOPOLOGY_BASE_PORT is not set: these tests need `scripts/cluster up` \
                 (scripts/topology-test runs them)",
            )?
            .parse()
            .context("TOPOLOGY_BASE_PORT is not a port")?;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cluster_dir = std::env::var_os("TOPOLOGY_CLUSTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/cluster"));
        let cluster_script = std::env::var_os("TOPOLOGY_CLUSTER_SCRIPT").map(PathBuf::from);
        Ok(Topology {
            base_port,
            cluster_dir,
            cluster_script,
        })
    }

    pub fn balancer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.base_port)
    }

    pub fn primary_port(&self) -> u16 {
        self.base_port + 1
    }

    pub fn replica_port(&self) -> u16 {
        self.base_port + 2
    }

    pub fn pgbouncer_port(&self) -> u16 {
        self.base_port + 3
    }

    pub fn stats_port(&self) -> u16 {
        self.base_port + 4
    }

    pub fn app_port(&self, n: u16) -> u16 {
        self.base_port + 10 + n
    }

    /// The primary's database as the superuser, directly (never through PgBouncer).
    pub fn primary_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/mercado",
            self.primary_port()
        )
    }

    /// A connection to the primary, as the superuser.
    pub async fn primary(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.primary_url())
            .await
            .context("connecting to the primary")
    }

    /// A connection to the replica, as the superuser.
    pub async fn replica(&self) -> anyhow::Result<PgConnection> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.replica_port())
            .username("postgres")
            .database("mercado");
        PgConnection::connect_with(&options)
            .await
            .context("connecting to the replica")
    }

    /// A connection through PgBouncer as the application's role, sending only what PgBouncer
    /// accepts (no `extra_float_digits`, no startup `options`), as the application does.
    pub async fn through_pgbouncer(&self, database: &str) -> anyhow::Result<PgConnection> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.pgbouncer_port())
            .username("mercado")
            .database(database)
            .extra_float_digits(None::<i8>);
        PgConnection::connect_with(&options)
            .await
            .context("connecting through PgBouncer")
    }

    /// Runs admin-console `commands` on PgBouncer (such as `KILL mercado`), in order; stops at
    /// the first that fails.
    pub async fn pgbouncer_admin(&self, commands: &[&str]) -> anyhow::Result<()> {
        self.pgbouncer_console(&["-q", "-v", "ON_ERROR_STOP=1"], commands)
            .await
            .map(drop)
    }

    /// How many lines of each API process's log (1 to [`APPS`]) contain `needle` so far.
    pub fn log_lines_with(&self, needle: &str) -> Vec<usize> {
        (1..=APPS)
            .map(|n| {
                std::fs::read_to_string(self.cluster_dir.join(format!("logs/mercado-{n}.log")))
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.contains(needle))
                    .count()
            })
            .collect()
    }

    /// One line of PgBouncer's admin console, `SHOW <what>`, as rows of (column, value).
    pub async fn pgbouncer_show(&self, what: &str) -> anyhow::Result<Vec<Vec<(String, String)>>> {
        let text = self
            .pgbouncer_console(&["-A", "-F", "|"], &[&format!("SHOW {what}")])
            .await?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split('|')
            .map(str::to_owned)
            .collect();
        Ok(lines
            .filter(|line| !line.starts_with('(') && !line.is_empty())
            .map(|line| {
                header
                    .iter()
                    .cloned()
                    .zip(line.split('|').map(str::to_owned))
                    .collect()
            })
            .collect())
    }

    /// `commands` on PgBouncer's admin console as the superuser, with `psql` and its `options`
    /// (the console speaks only the simple query protocol); what `psql` printed.
    async fn pgbouncer_console(
        &self,
        options: &[&str],
        commands: &[&str],
    ) -> anyhow::Result<String> {
        let mut psql = tokio::process::Command::new(psql());
        psql.arg("-X")
            .args(options)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "pgbouncer"])
            .args(["-p", &self.pgbouncer_port().to_string()]);
        for command in commands {
            psql.args(["-c", command]);
        }
        let output = psql
            .output()
            .await
            .context("running psql against PgBouncer's console")?;
        if !output.status.success() {
            bail!(
                "{commands:?}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The pid of API process `n` (1-based), from the cluster's pid file.
    pub fn app_pid(&self, n: u16) -> anyhow::Result<u32> {
        let path = self.cluster_dir.join(format!("apps/mercado-{n}.pid"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no pid", path.display()))
    }

    /// `scripts/cluster up`: starts again whatever a test stopped or killed.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let Some(script) = &self.cluster_script else {
            bail!("TOPOLOGY_CLUSTER_SCRIPT is not set: cannot bring the cluster back up");
        };
        let status = tokio::process::Command::new(script)
            .arg("up")
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("running scripts/cluster up")?;
        if !status.success() {
            bail!("scripts/cluster up failed: {status}");
        }
        Ok(())
    }

    /// Which API processes the balancer has in rotation, from its stats page.
    pub async fn in_rotation(&self) -> anyhow::Result<Vec<String>> {
        let csv = Client::new()
            .get(format!("http://127.0.0.1:{}/;csv", self.stats_port()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .context("reading HAProxy's stats")?
            .text()
            .await?;
        Ok(csv
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                let up = fields.get(17).is_some_and(|s| s.starts_with("UP"));
                (fields.first() == Some(&"mercado")
                    && fields.get(1).is_some_and(|s| s.starts_with("mercado-"))
                    && up)
                    .then(|| fields[1].to_owned())
            })
            .collect())
    }
}

/// The newest PostgreSQL's `psql` (or `PG_BIN_DIR/psql`).
pub fn psql() -> PathBuf {
    pg_bin("psql")
}

/// A program of the newest installed PostgreSQL (`PG_BIN_DIR`, else `/usr/lib/postgresql/*/bin`).
pub fn pg_bin(program: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir).join(program);
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    match versions.last() {
        Some(version) => PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{program}")),
        None => PathBuf::from(program),
    }
}

/// A user of the API: its id and token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
}

/// An HTTP client of the balancer that reads its own writes: it remembers the newest
/// `x-read-after-lsn` a write's answer carried and sends it with every later request, as the
/// API documents for clients of a replica. Clones share what they remember.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: Client,
    pub base_url: String,
    newest_lsn: std::sync::Arc<std::sync::Mutex<Option<(u64, String)>>>,
}

/// A `pg_lsn` as a number, for comparing two: `16/B374D848`.
pub fn lsn_value(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

/// An answer: status, the process that served it (`x-served-by`), the `x-read-after-lsn` it
/// carried, and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub served_by: Option<String>,
    pub read_after_lsn: Option<String>,
    pub body: Value,
}

impl Answer {
    /// The body, when the status is `expected`; else an error naming both.
    pub fn expect(self, expected: StatusCode) -> anyhow::Result<Value> {
        if self.status != expected {
            bail!("expected {expected}, got {}: {}", self.status, self.body);
        }
        Ok(self.body)
    }
}

impl Api {
    pub fn new(base_url: String) -> anyhow::Result<Api> {
        let http = Client::builder()
            .timeout(Duration::from_secs(40))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base_url,
            newest_lsn: Default::default(),
        })
    }

    /// The newest `x-read-after-lsn` seen, if any.
    pub fn newest_lsn(&self) -> Option<String> {
        self.newest_lsn
            .lock()
            .ok()
            .and_then(|newest| newest.as_ref().map(|(_, text)| text.clone()))
    }

    fn with_lsn(&self, request: RequestBuilder) -> RequestBuilder {
        match self.newest_lsn() {
            Some(lsn) => request.header("x-read-after-lsn", lsn),
            None => request,
        }
    }

    /// `GET path`, as `token`'s user (none when `token` is empty).
    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base_url));
        let request = if token.is_empty() {
            request
        } else {
            request.bearer_auth(token)
        };
        self.with_lsn(request)
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> RequestBuilder {
        self.with_lsn(
            self.http
                .post(format!("{}{path}", self.base_url))
                .bearer_auth(token)
                .json(body),
        )
    }

    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Answer> {
        let response: Response = request.send().await.context("sending a request")?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status();
        let served_by = header("x-served-by");
        let read_after_lsn = header("x-read-after-lsn");
        if let Some(text) = &read_after_lsn
            && let Some(value) = lsn_value(text)
            && let Ok(mut newest) = self.newest_lsn.lock()
            && newest.as_ref().is_none_or(|(seen, _)| *seen < value)
        {
            *newest = Some((value, text.clone()));
        }
        let text = response.text().await.context("reading an answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            served_by,
            read_after_lsn,
            body,
        })
    }

    /// Registers `name` (made unique by the caller) and returns its id and token.
    pub async fn register(&self, name: &str) -> anyhow::Result<User> {
        let body = self
            .send(
                self.http
                    .post(format!("{}/users", self.base_url))
                    .json(&json!({
                        "username": name,
                        "email": format!("{name}@topology.example"),
                    })),
            )
            .await?
            .expect(StatusCode::CREATED)?;
        Ok(User {
            id: int(&body["user"], "id")?,
            token: body["token"]
                .as_str()
                .context("a registration without a token")?
                .to_owned(),
        })
    }

    /// Deposits `amount` for `user`.
    pub async fn deposit(&self, user: &User, amount: &str) -> anyhow::Result<Value> {
        self.send(self.post("/me/deposits", &user.token, &json!({ "amount": amount })))
            .await?
            .expect(StatusCode::OK)
    }

    /// Sells a product; returns its id.
    pub async fn product(
        &self,
        seller: &User,
        sku: &str,
        price: &str,
        stock: i64,
    ) -> anyhow::Result<i64> {
        let body = self
            .send(self.post(
                "/products",
                &seller.token,
                &json!({ "sku": sku, "name": format!("Topology {sku}"), "price": price, "stock": stock }),
            ))
            .await?
            .expect(StatusCode::CREATED)?;
        int(&body, "id")
    }
}

/// `value[field]` as an integer.
pub fn int(value: &Value, field: &str) -> anyhow::Result<i64> {
    value[field]
        .as_i64()
        .with_context(|| format!("no integer `{field}` in {value}"))
}

/// A name no earlier run used: `prefix` and the time in microseconds, in base 36 (usernames
/// are at most 50 characters).
pub fn unique(prefix: &str) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut n = micros * 1000 + u128::from(serial % 1000);
    let mut digits = Vec::new();
    while n > 0 {
        let d = (n % 36) as u8;
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
    }
    digits.reverse();
    format!("{prefix}_{}", String::from_utf8_lossy(&digits))
}
