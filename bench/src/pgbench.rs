//! Running `pgbench` with Mercado's own statements, and reading its summary.
//!
//! pgbench is PostgreSQL's load generator written in C on libpq: with `-M prepared` it sends
//! each statement as a prepared statement, as sqlx does, with no ORM and no mapping. Its
//! throughput at a given client count is the ceiling the service can approach on this server.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use serde::Serialize;
use url::Url;

/// What one pgbench run reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct PgbenchResult {
    pub(crate) clients: u32,
    pub(crate) transactions: u64,
    pub(crate) failed: u64,
    /// Transactions per second, without the initial connection time.
    pub(crate) tps: f64,
    pub(crate) latency_average_ms: f64,
}

/// Reads pgbench's summary: the transaction count, failures, average latency and tps.
pub(crate) fn parse_output(clients: u32, output: &str) -> anyhow::Result<PgbenchResult> {
    let mut transactions = None;
    let mut failed = 0;
    let mut latency = None;
    let mut tps = None;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            // "20905" or, with -t, "20905/20905".
            let count = rest.trim().split('/').next().unwrap_or_default();
            transactions = Some(count.parse::<u64>().context("transaction count")?);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            let count = rest.split_whitespace().next().unwrap_or_default();
            failed = count.parse::<u64>().context("failed transaction count")?;
        } else if let Some(rest) = line.strip_prefix("latency average =") {
            let value = rest.trim().trim_end_matches("ms").trim();
            latency = Some(value.parse::<f64>().context("latency average")?);
        } else if let Some(rest) = line.strip_prefix("tps =") {
            // Older versions print two tps lines; the one without connection time is wanted.
            if line.contains("including connections establishing") {
                continue;
            }
            let value = rest.split_whitespace().next().unwrap_or_default();
            tps = Some(value.parse::<f64>().context("tps")?);
        }
    }
    match (transactions, latency, tps) {
        (Some(transactions), Some(latency_average_ms), Some(tps)) => Ok(PgbenchResult {
            clients,
            transactions,
            failed,
            tps,
            latency_average_ms,
        }),
        _ => bail!("pgbench printed no summary (tps, latency, transactions):\n{output}"),
    }
}

/// How to run one pgbench measurement.
#[derive(Debug, Clone)]
pub(crate) struct PgbenchRun<'a> {
    pub(crate) pgbench: &'a Path,
    pub(crate) server_url: &'a Url,
    pub(crate) database: &'a str,
    /// The scripts; pgbench picks one at random, with equal weights, for each transaction.
    pub(crate) scripts: &'a [PathBuf],
    pub(crate) clients: u32,
    pub(crate) seconds: u64,
    /// `-D name=value` variables the script reads.
    pub(crate) variables: Vec<(&'static str, i64)>,
}

impl PgbenchRun<'_> {
    /// The arguments, as `scripts/pgbench/run` passes them too.
    pub(crate) fn arguments(&self) -> Vec<String> {
        let mut args = vec![
            "-n".to_owned(),
            "-M".to_owned(),
            "prepared".to_owned(),
            "-c".to_owned(),
            self.clients.to_string(),
            "-j".to_owned(),
            self.clients.to_string(),
            "-T".to_owned(),
            self.seconds.to_string(),
        ];
        for (name, value) in &self.variables {
            args.push("-D".to_owned());
            args.push(format!("{name}={value}"));
        }
        for script in self.scripts {
            args.push("-f".to_owned());
            args.push(script.display().to_string());
        }
        args.push("-h".to_owned());
        args.push(self.server_url.host_str().unwrap_or("127.0.0.1").to_owned());
        args.push("-p".to_owned());
        args.push(self.server_url.port().unwrap_or(5432).to_string());
        let user = self.server_url.username();
        args.push("-U".to_owned());
        args.push(if user.is_empty() { "postgres" } else { user }.to_owned());
        args.push(self.database.to_owned());
        args
    }

    pub(crate) async fn run(&self) -> anyhow::Result<PgbenchResult> {
        let mut command = tokio::process::Command::new(self.pgbench);
        command
            .args(self.arguments())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // The password goes through the environment, never the command line.
        if let Some(password) = self.server_url.password() {
            command.env("PGPASSWORD", password);
        }
        let output = command
            .output()
            .await
            .with_context(|| format!("running {}", self.pgbench.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "pgbench failed ({}):\n{}\n{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_output(self.clients, &stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from pgbench 15 on this project's development machine.
    const PGBENCH_15_OUTPUT: &str = include_str!("pgbench_sample_15.txt");

    #[test]
    fn the_summary_of_pgbench_15_is_read_exactly() {
        let result = parse_output(2, PGBENCH_15_OUTPUT).expect("the sample parses");
        assert_eq!(result.clients, 2);
        assert_eq!(result.transactions, 20905);
        assert_eq!(result.failed, 0);
        assert!((result.tps - 21167.240948).abs() < 1e-6);
        assert!((result.latency_average_ms - 0.094).abs() < 1e-9);
    }

    #[test]
    fn an_output_without_a_summary_is_an_error() {
        assert!(parse_output(1, "pgbench: error: connection refused").is_err());
    }

    #[test]
    fn the_old_tps_line_with_connection_time_is_ignored() {
        let output = "number of transactions actually processed: 10/10\n\
                      latency average = 1.5 ms\n\
                      tps = 5.0 (including connections establishing)\n\
                      tps = 6.5 (excluding connections establishing)\n";
        let result = parse_output(1, output).expect("parses");
        assert_eq!(result.transactions, 10);
        assert!((result.tps - 6.5).abs() < 1e-9);
    }
}
