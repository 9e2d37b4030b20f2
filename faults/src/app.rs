//! The real `mercado` binary as a child process: `serve --migrate --no-demo-data` over a
//! throwaway server, on a free loopback port, logging to a file; killed when dropped.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, pg::tail};

/// Mercado's `REQUEST_TIMEOUT` in every test: each request is answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long Mercado may take to migrate and answer `/readyz` 200 after it is spawned.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// The variables of Mercado's own that the suite sets; any of them inherited from the
/// environment that runs the tests is removed first, so a developer's `.env`-style exports
/// cannot change a test.
const MERCADO_VARIABLES: [&str; 16] = [
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_MIN_CONNECTIONS",
    "DATABASE_ACQUIRE_TIMEOUT",
    "DATABASE_IDLE_TIMEOUT",
    "DATABASE_MAX_LIFETIME",
    "DATABASE_TEST_IF_IDLE_FOR",
    "DATABASE_STATEMENT_TIMEOUT",
    "DATABASE_APPLICATION_NAME",
    "LISTEN_ADDR",
    "REQUEST_TIMEOUT",
    "MAX_CONCURRENT_REQUESTS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SQL_SLOW_THRESHOLD",
    "RUST_LOG",
];

/// A running `mercado serve`.
#[derive(Debug)]
pub struct Mercado {
    bin: PathBuf,
    database_url: String,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    workdir: PathBuf,
    child: Option<Child>,
    restarts: u32,
    http: reqwest::Client,
}

impl Mercado {
    /// The binary to run: the one `MERCADO_BIN` names (a release build, for figures), else
    /// `default` (the tests pass the build cargo made for them, `CARGO_BIN_EXE_mercado`).
    pub fn binary(default: &Path) -> anyhow::Result<PathBuf> {
        let bin = std::env::var_os("MERCADO_BIN").map_or_else(|| default.to_owned(), PathBuf::from);
        if !bin.is_file() {
            bail!(
                "{} is not a file: build mercado, or set MERCADO_BIN",
                bin.display()
            );
        }
        Ok(bin)
    }

    /// Spawn `mercado serve --migrate --no-demo-data` with `DATABASE_URL=database_url`,
    /// `LISTEN_ADDR=127.0.0.1:<free port>`, `REQUEST_TIMEOUT` = [`REQUEST_TIMEOUT`] and the
    /// given extra settings; its output goes to `mercado.log` in `workdir` (also its working
    /// directory, so no `.env` of anyone's is read). Returns once `/readyz` answers 200.
    pub async fn start(
        bin: PathBuf,
        database_url: String,
        workdir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Mercado> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the probe client")?;
        let mut app = Mercado {
            bin,
            database_url,
            port: free_port()?,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: workdir.join("mercado.log"),
            workdir: workdir.to_owned(),
            child: None,
            restarts: 0,
            http,
        };
        app.spawn()?;
        app.wait_until_ready(STARTUP_LIMIT).await?;
        Ok(app)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let log_err = log.try_clone().context("sharing the log file")?;
        let mut command = Command::new(&self.bin);
        command
            .args(["serve", "--migrate", "--no-demo-data"])
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for var in MERCADO_VARIABLES {
            command.env_remove(var);
        }
        let timeout_ms = REQUEST_TIMEOUT.as_millis().to_string();
        command
            .env("DATABASE_URL", &self.database_url)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("REQUEST_TIMEOUT", format!("{timeout_ms}ms"))
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "text")
            // Mercado colours its text log even into a file; tracing-subscriber honours this.
            .env("NO_COLOR", "1");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `http://127.0.0.1:<port>`; the same across restarts.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many times [`restart`](Self::restart) started it again.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The process id of the current process, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (it has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: no shutdown, requests in flight get their connections reset.
    pub fn sigkill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("sending SIGKILL to mercado")?;
            child.wait().context("reaping mercado")?;
        }
        Ok(())
    }

    /// Start it again, same port, settings and database, after [`sigkill`](Self::sigkill);
    /// returns once `/readyz` answers 200.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("restart: mercado is still running");
        }
        self.restarts += 1;
        self.spawn()?;
        self.wait_until_ready(STARTUP_LIMIT).await
    }

    /// Poll `/readyz` until it answers 200.
    pub async fn wait_until_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if !self.is_running() {
                bail!(
                    "mercado exited before it was ready; its log:\n{}",
                    self.log_tail(30)
                );
            }
            if self.ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "mercado not ready after {within:?}; its log:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `/readyz` answers 200 now.
    pub async fn ready(&self) -> bool {
        match self
            .http
            .get(format!("{}/readyz", self.base_url()))
            .send()
            .await
        {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Mercado {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
