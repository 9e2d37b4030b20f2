//! The real `mercado` binary as a child process, serving a benchmark database, for the HTTP
//! runs: started with `serve --no-demo-data`, `DATABASE_URL` and `LISTEN_ADDR` on a free
//! loopback port and nothing else in its environment (every other setting at its default, as
//! `.env.example` lists them: `LOG_LEVEL=info`, text logs on stderr, one line per response),
//! its working directory a scratch directory (so no `.env` is read), stdout and stderr into a
//! log file. It is killed when dropped.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use url::Url;

/// How long the binary may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `target/release/mercado` beside this harness's own executable.
pub(crate) fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the harness's own executable")?;
    let dir = exe
        .parent()
        .context("the harness's executable has no directory")?;
    Ok(dir.join("mercado"))
}

#[derive(Debug)]
pub(crate) struct MercadoServer {
    child: Child,
    pub(crate) pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base_url: String,
    pub(crate) log: PathBuf,
}

impl MercadoServer {
    /// Starts `binary` on `database_url` and waits until `/readyz` answers 200.
    pub(crate) async fn start(
        binary: &Path,
        database_url: &Url,
        work_dir: &Path,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p mercado` \
                 (or pass --mercado-bin PATH)",
                binary.display()
            );
        }
        let port = free_port()?;
        let log = work_dir.join(format!("mercado-{port}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .args(["serve", "--no-demo-data"])
            .env_clear()
            .env("DATABASE_URL", database_url.as_str())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .current_dir(work_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.base_url);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mercado exited ({status}) before it was ready; its log, {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "mercado did not answer {url} within {READY_TIMEOUT:?}; its log: {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for MercadoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on the loopback interface now (the kernel's choice; released at once, so
/// another process could take it first, which `start` would report as the child exiting).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
