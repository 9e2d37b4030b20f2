//! A throwaway PostgreSQL server: its own `initdb` cluster in a temporary directory, on a free
//! loopback port, that a test may stop, crash and start again, and that is stopped and removed
//! when it is dropped — also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::free_port;

/// The database Mercado is given on each throwaway server.
pub const DATABASE: &str = "mercado";

/// The `application_name` of the suite's own sessions, so that killing the app's backends never
/// kills them.
pub const ADMIN_APPLICATION_NAME: &str = "mercado-faults-admin";

/// How long `pg_ctl` may take to start or stop the server.
const PG_CTL_TIMEOUT_SECS: &str = "30";

/// A PostgreSQL server of our own. Never the system's: it has its own data directory and port,
/// listens on 127.0.0.1 only and keeps its socket in its own directory.
#[derive(Debug)]
pub struct PgInstance {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Set when the suite runs as root: PostgreSQL refuses to, so its commands run as this user.
    run_as: Option<String>,
    running: bool,
}

impl PgInstance {
    /// `initdb` (trust authentication, superuser `postgres`) in a new temporary directory, start
    /// the server on a free loopback port, wait until it accepts connections and create the
    /// database [`DATABASE`].
    pub async fn start_new() -> anyhow::Result<PgInstance> {
        let bin = pg_bin_dir()?;
        let run_as = if running_as_root()? {
            Some(std::env::var("FAULTS_PG_OS_USER").unwrap_or_else(|_| "postgres".to_owned()))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("mercado-faults-")
            .tempdir()
            .context("creating the throwaway server's directory")?;
        if let Some(user) = &run_as {
            let (uid, gid) = os_user_ids(user)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {} to {user}", dir.path().display()))?;
        }
        let port = free_port()?;
        let mut pg = PgInstance {
            dir,
            bin,
            port,
            run_as,
            running: false,
        };
        let data = pg.data_dir();
        pg.pg_command(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // Settings of this server only. fsync is off because nothing here survives the machine:
        // a crash in these tests is `pg_ctl stop -m immediate`, which loses no written WAL,
        // whereas synchronous_commit stays on so that an acknowledged COMMIT is in the WAL.
        let conf = format!(
            "\n# mercado-faults\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nfsync = off\nfull_page_writes = off\n\
             max_connections = 100\nshared_buffers = 64MB\nlog_min_messages = warning\n\
             log_connections = off\nlog_disconnections = off\n",
            path_str(pg.dir.path())?
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).context("reading postgresql.conf")?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).context("writing postgresql.conf")?;
        pg.start().await?;
        let mut admin = pg.admin_on("postgres").await?;
        // An identifier cannot be a bound parameter; DATABASE is a constant of ours.
        sqlx::query("CREATE DATABASE mercado")
            .execute(&mut admin)
            .await
            .context("creating the mercado database")?;
        admin.close().await.ok();
        Ok(pg)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of [`DATABASE`] on this server, for Mercado's `DATABASE_URL`.
    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Where its own files live (the data directory is `data/` in it); Mercado's log goes here too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Start the server (again) on the same port and data directory and wait until it accepts
    /// connections; after [`crash`](Self::crash) this includes its crash recovery.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let log = self.log_file();
        self.pg_command(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "start",
            ],
        )?;
        self.running = true;
        self.wait_until_ready(Duration::from_secs(30)).await
    }

    /// `pg_ctl stop -m fast`: clients are disconnected, open transactions roll back, and the
    /// server shuts down cleanly.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// `pg_ctl stop -m immediate`: the server is killed without a shutdown checkpoint, as in a
    /// crash; the next start runs crash recovery from the WAL.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.pg_command(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                mode,
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Wait until a connection to [`DATABASE`] (or, before it exists, `postgres`) succeeds.
    pub async fn wait_until_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let attempt = match self.admin_on(DATABASE).await {
                Ok(conn) => Ok(conn),
                Err(_) => self.admin_on("postgres").await,
            };
            match attempt {
                Ok(conn) => {
                    conn.close().await.ok();
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!(
                        "the throwaway server on port {} is not ready after {within:?}",
                        self.port
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A new connection of the suite's own (application_name [`ADMIN_APPLICATION_NAME`]) to
    /// [`DATABASE`], for fault injection and for checking the invariants.
    pub async fn admin(&self) -> anyhow::Result<PgConnection> {
        self.admin_on(DATABASE).await
    }

    async fn admin_on(&self, database: &str) -> anyhow::Result<PgConnection> {
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database(database)
            .application_name(ADMIN_APPLICATION_NAME);
        let connect = PgConnection::connect_with(&options);
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(result) => result.with_context(|| {
                format!(
                    "connecting to {database} on the throwaway server (port {})",
                    self.port
                )
            }),
            Err(_) => bail!(
                "connecting to {database} on port {} took over 5 s",
                self.port
            ),
        }
    }

    /// Terminate every backend whose `application_name` is `application_name`
    /// (`pg_terminate_backend`), from a separate admin connection; returns how many were.
    pub async fn terminate_backends(&self, application_name: &str) -> anyhow::Result<i64> {
        let mut admin = self.admin().await?;
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(application_name)
        .fetch_one(&mut admin)
        .await
        .context("terminating backends")?;
        admin.close().await.ok();
        Ok(killed)
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file(), lines)
    }

    fn pg_command(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command.args(args).current_dir(self.dir.path());
        // Never aim a libpq tool at the system server by accident.
        for var in ["PGHOST", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE"] {
            command.env_remove(var);
        }
        let output = command
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} {} failed ({}):\n{}{}\nserver log:\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_tail(20)
            );
        }
        Ok(output)
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        // Immediate: nothing of it is kept. The directory goes with `self.dir`, after this,
        // unless FAULTS_KEEP=1 asks to keep it (the server's and Mercado's logs are in it).
        if self.running || self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl_stop("immediate");
        }
        if std::env::var("FAULTS_KEEP").is_ok_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!("FAULTS_KEEP=1: kept {}", self.dir.path().display());
        }
    }
}

/// Where the PostgreSQL programs are: `PG_BIN_DIR` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PG_BIN_DIR and no /usr/lib/postgresql: where are initdb and pg_ctl?")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no initdb under /usr/lib/postgresql/*/bin; set PG_BIN_DIR"),
    }
}

fn running_as_root() -> anyhow::Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .context("no effective Uid in /proc/self/status")?;
    Ok(uid == "0")
}

fn os_user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&user) && fields.len() > 3 {
            let uid = fields[2].parse().context("uid in /etc/passwd")?;
            let gid = fields[3].parse().context("gid in /etc/passwd")?;
            return Ok((uid, gid));
        }
    }
    bail!(
        "running as root, PostgreSQL needs another OS user and there is no {user} (set FAULTS_PG_OS_USER)"
    )
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The last `lines` lines of a text file, or a note that it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("({} unreadable: {error})", path.display()),
    }
}
