//! Why PgBouncer 1.18 (Debian bookworm's) is not a supported pooler: `mercado serve` behind it
//! in transaction pooling never becomes ready, in both of its configurations that docs/scaling.md
//! measured, with the error that says why. sqlx 0.9 sends every statement as a *named* prepared
//! statement (`sqlx_s_N`, numbered per client connection); 1.18 has no protocol-level prepared
//! statements, so a statement prepared by one client on one server connection is either seen by
//! another client (`already exists`) or missing on the next server connection (`does not
//! exist`). PgBouncer ≥ 1.21 with `max_prepared_statements` (the cluster's 1.24) tracks them.
//!
//! The test starts a PgBouncer 1.18 of its own on a free port in front of the cluster's primary
//! (the cluster's own PgBouncer is untouched), and the release binary (`MERCADO_BIN`) behind it.
//! Ignored without a cluster: `scripts/topology-test` runs it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use mercado_topology::Topology;

const PGBOUNCER_118: &str = "/usr/sbin/pgbouncer";

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PgBouncer 1.18 in transaction pooling on `port`, in front of the primary, with `extra`
/// settings; killed when dropped.
fn start_pgbouncer(
    dir: &Path,
    topology: &Topology,
    port: u16,
    extra: &str,
) -> anyhow::Result<tokio::process::Child> {
    let config = dir.join("pgbouncer.ini");
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, "\"mercado\" \"\"\n")?;
    std::fs::write(
        &config,
        format!(
            "[databases]\nmercado = host=127.0.0.1 port={primary} dbname=mercado\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {userlist}\npool_mode = transaction\n\
             default_pool_size = 2\nmax_client_conn = 100\n\
             ignore_startup_parameters = extra_float_digits, options\n{extra}\n",
            primary = topology.primary_port(),
            userlist = userlist.display(),
        ),
    )?;
    let mut command = if is_root() {
        // PgBouncer refuses to run as root. `setpriv` execs it in its own place (`runuser`
        // would fork and wait), so killing the child on drop kills PgBouncer itself.
        let mut c = tokio::process::Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            PGBOUNCER_118,
        ]);
        c
    } else {
        tokio::process::Command::new(PGBOUNCER_118)
    };
    command
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command.spawn().context("starting PgBouncer 1.18")
}

/// Starts `mercado serve` behind `url` and waits up to `within` for `/readyz`; returns whether it
/// became ready and what it logged.
async fn serve_behind(url: &str, within: Duration, log: &Path) -> anyhow::Result<(bool, String)> {
    let binary = std::env::var("MERCADO_BIN").context("MERCADO_BIN names the release binary")?;
    let port = free_port()?;
    let log_file = std::fs::File::create(log)?;
    let mut child = tokio::process::Command::new(&binary)
        .args(["serve", "--no-demo-data"])
        .env("DATABASE_URL", url)
        .env("DATABASE_POOLER", "pgbouncer-transaction")
        .env("DATABASE_MAX_CONNECTIONS", "4")
        .env_remove("DATABASE_REPLICA_URL")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    let mut ready = false;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            break;
        }
        if let Ok(answer) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            && answer.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill().await;
    Ok((ready, std::fs::read_to_string(log).unwrap_or_default()))
}

#[tokio::test]
#[ignore = "needs the scripts/cluster topology; scripts/topology-test runs it"]
async fn mercado_behind_pgbouncer_1_18_in_transaction_pooling_never_becomes_ready()
-> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    if !Path::new(PGBOUNCER_118).exists() {
        bail!("{PGBOUNCER_118} is missing: apt-get install pgbouncer (bookworm's 1.18)");
    }
    let version = std::process::Command::new(PGBOUNCER_118)
        .arg("--version")
        .output()?;
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    ensure!(
        version.starts_with("PgBouncer 1.18"),
        "{PGBOUNCER_118} is {version}"
    );

    let dir = tempfile::tempdir()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let setups = [
        ("defaults, sqlx's statement cache", "", ""),
        (
            "statement cache off, DEALLOCATE ALL after every transaction",
            "server_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1",
            "?statement-cache-capacity=0",
        ),
    ];
    let mut seen = Vec::new();
    for (n, (name, settings, query)) in setups.iter().enumerate() {
        let port = free_port()?;
        let sub = dir.path().join(format!("setup-{n}"));
        std::fs::create_dir(&sub)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755))?;
        }
        let _pgbouncer = start_pgbouncer(&sub, &topology, port, settings)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = format!("postgres://mercado@127.0.0.1:{port}/mercado{query}");
        let (ready, log) =
            serve_behind(&url, Duration::from_secs(20), &sub.join("mercado.log")).await?;
        let error = log
            .lines()
            .find(|line| line.contains("prepared statement"))
            .map(str::trim)
            .map(str::to_owned);
        ensure!(
            !ready,
            "{name}: mercado became ready behind PgBouncer 1.18 — docs/scaling.md says it cannot"
        );
        let Some(error) = error else {
            bail!("{name}: not ready, but not for a prepared statement; its log:\n{log}");
        };
        seen.push(format!("{name}: {error}"));
    }
    println!(
        "behind {}:",
        version.lines().next().unwrap_or("PgBouncer 1.18")
    );
    for line in &seen {
        println!("  never ready — {line}");
    }
    Ok(())
}
