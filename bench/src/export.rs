//! Section 6: exporting every message of the large database with
//! `service::export::export_messages`, in a child process so that its peak resident memory is
//! the export's alone and not the harness's (which holds samples, pools and an HTTP server).

use std::{process::Stdio, time::Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use service::export::{ExportScope, export_messages};
use url::Url;

/// The child reads the database URL from here, so a password never shows in a process list.
pub(crate) const EXPORT_URL_VARIABLE: &str = "MERCADO_BENCH_EXPORT_URL";

/// What the child prints, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExportFigures {
    pub(crate) rows: u64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
    /// Resident memory once connected, before the export started.
    pub(crate) rss_before_mib: f64,
    /// Peak resident memory of the process (`VmHWM`), after the export.
    pub(crate) peak_rss_mib: f64,
    /// Resident memory after the export (`VmRSS`).
    pub(crate) rss_after_mib: f64,
}

/// A `/proc/self/status` field in KiB (`VmHWM:   12345 kB`).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn memory_mib(field: &str) -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib =
        status_kib(&status, field).with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kib as f64 / 1024.0)
}

/// The hidden `export-child` subcommand: connects, exports every message to a sink, prints one
/// JSON line of figures.
pub(crate) async fn child() -> anyhow::Result<()> {
    let url = std::env::var(EXPORT_URL_VARIABLE)
        .with_context(|| format!("{EXPORT_URL_VARIABLE} is not set"))?;
    let url = Url::parse(&url)?;
    let (_, db) = crate::setup::connect_app(&url).await?;
    let rss_before_mib = memory_mib("VmRSS")?;
    let mut sink = tokio::io::sink();
    let started = Instant::now();
    let rows = export_messages(&db, ExportScope::All, &mut sink).await?;
    let seconds = started.elapsed().as_secs_f64();
    let figures = ExportFigures {
        rows,
        seconds,
        rows_per_second: rows as f64 / seconds.max(f64::EPSILON),
        rss_before_mib,
        peak_rss_mib: memory_mib("VmHWM")?,
        rss_after_mib: memory_mib("VmRSS")?,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// Runs the child on `url` and reads its figures.
pub(crate) async fn run(url: &Url) -> anyhow::Result<ExportFigures> {
    let exe = std::env::current_exe().context("finding the harness's own executable")?;
    let output = tokio::process::Command::new(exe)
        .arg("export-child")
        .env(EXPORT_URL_VARIABLE, url.as_str())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running export-child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "export-child failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .last()
        .context("export-child printed nothing")?;
    let figures: ExportFigures =
        serde_json::from_str(line).context("reading export-child's figures")?;
    println!(
        "  exported {} messages in {:.1} s ({:.0} rows/s); RSS before {:.1} MiB, peak {:.1} MiB",
        figures.rows,
        figures.seconds,
        figures.rows_per_second,
        figures.rss_before_mib,
        figures.peak_rss_mib
    );
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_status_field_is_read_in_kib() {
        let status = "Name:\tmercado-bench\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
