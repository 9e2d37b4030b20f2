//! `perf record` attached to a process for the duration of a load, for `scripts/flamegraph`.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

/// Sampling frequency: a prime, so that sampling does not lock step with a periodic timer.
const FREQUENCY_HZ: &str = "499";

/// A running `perf record -p PID`, or nothing when no output file was asked for.
pub(crate) struct Recording {
    child: Option<Child>,
}

impl Recording {
    /// Starts `perf record -F 499 -g --call-graph <call_graph> -p <pid> -o <out>` and gives it
    /// a moment to attach before the load starts.
    pub(crate) async fn start(
        out: Option<&Path>,
        call_graph: &str,
        pid: u32,
    ) -> anyhow::Result<Self> {
        let Some(out) = out else {
            return Ok(Self { child: None });
        };
        let mut child = Command::new("perf")
            .args([
                "record",
                "-F",
                FREQUENCY_HZ,
                "-g",
                "--call-graph",
                call_graph,
            ])
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdin(Stdio::null())
            .spawn()
            .context("starting perf record (Debian: apt-get install linux-perf)")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = child.try_wait()? {
            bail!("perf record exited at once ({status}); see its message above");
        }
        println!(
            "  perf record (pid {}) is sampling pid {pid} into {}",
            child.id(),
            out.display()
        );
        Ok(Self { child: Some(child) })
    }

    /// Stops the recording as Ctrl-C would (perf writes its file on SIGINT) and waits for it.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // Our own child, not waited for yet, so its pid is still its own. (`kill`, the
        // command: the workspace forbids the `unsafe` of calling kill(2) directly.)
        let signalled = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .context("running kill -INT")?;
        if !signalled.success() {
            bail!("kill -INT {} failed ({signalled})", child.id());
        }
        let status = child.wait()?;
        // perf exits with the signal's status (or 0) after writing its data.
        if !status.success() && status.code().is_some() {
            bail!("perf record failed ({status})");
        }
        Ok(())
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
