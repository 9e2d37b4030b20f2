//! CPU time of processes, read from `/proc`: this process, the `mercado` child, and the whole
//! PostgreSQL server (the postmaster, every child it has, and the children it has reaped).
//!
//! `/proc/<pid>/stat` counts in clock ticks (`getconf CLK_TCK`, asked once, not assumed).
//! utime and stime of a process are the sum over all its threads; cutime and cstime are those
//! of its children that exited and were waited for (for the postmaster: backends whose client
//! disconnected, autovacuum workers, …).
//!
//! A tick is 10 ms where `CLK_TCK` is 100, and the kernel samples which process a tick goes to,
//! so a backend that works for a few milliseconds may be charged nothing. PostgreSQL's
//! processes each have one thread, so their live CPU time is read in nanoseconds instead, from
//! the first field of `/proc/<pid>/schedstat` (the scheduler's own running total). Only the
//! reaped children's time, which exists nowhere but in the postmaster's cutime + cstime, stays
//! in ticks.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{Context, bail};
use serde::Serialize;
use sqlx::PgPool;

/// The four CPU fields of `/proc/<pid>/stat`, and the parent's pid, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) ppid: u32,
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) cutime: u64,
    pub(crate) cstime: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so the fields are read after the line's last `)`.
pub(crate) fn parse_stat(line: &str) -> anyhow::Result<ProcStat> {
    let (_, after_name) = line
        .rsplit_once(')')
        .context("a /proc stat line without the ')' closing its command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3 of the line) is index 0, so field n is index n - 3.
    let field = |n: usize| -> anyhow::Result<u64> {
        let text = fields
            .get(n - 3)
            .with_context(|| format!("a /proc stat line without field {n}"))?;
        text.parse::<u64>()
            .with_context(|| format!("field {n} of a /proc stat line is {text:?}"))
    };
    Ok(ProcStat {
        ppid: u32::try_from(field(4)?)?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times: `getconf CLK_TCK`
/// (`sysconf(_SC_CLK_TCK)`; the workspace forbids the `unsafe` a direct call would need), asked
/// once.
pub(crate) fn clock_ticks_per_second() -> anyhow::Result<f64> {
    static TICKS: OnceLock<Result<f64, String>> = OnceLock::new();
    TICKS
        .get_or_init(|| {
            let output = std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .map_err(|e| format!("running getconf CLK_TCK: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|ticks| output.status.success() && *ticks >= 1.0)
                .ok_or_else(|| format!("getconf CLK_TCK printed {text:?}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The time a single-threaded process has run, in nanoseconds: the first field of
/// `/proc/<pid>/schedstat`. (For a process with several threads it would be the main thread's
/// alone, so the application is read from `stat` instead.)
pub(crate) fn parse_schedstat(line: &str) -> anyhow::Result<u64> {
    let first = line
        .split_whitespace()
        .next()
        .context("an empty /proc schedstat line")?;
    first
        .parse()
        .with_context(|| format!("the run time of a /proc schedstat line is {first:?}"))
}

fn read_runtime_ns(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/schedstat");
    let line = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_schedstat(&line).with_context(|| format!("parsing {path}"))
}

fn read_stat(pid: &str) -> anyhow::Result<ProcStat> {
    let path = format!("/proc/{pid}/stat");
    let line = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&line).with_context(|| format!("parsing {path}"))
}

/// A process's own CPU time (all threads, user and system), in seconds; `None` for this process.
pub(crate) fn process_cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let stat = match pid {
        Some(pid) => read_stat(&pid.to_string())?,
        None => read_stat("self")?,
    };
    Ok((stat.utime + stat.stime) as f64 / clock_ticks_per_second()?)
}

/// The PostgreSQL server's processes, found from its postmaster.
#[derive(Debug, Clone)]
pub(crate) struct PostgresProcesses {
    pub(crate) postmaster: u32,
}

impl PostgresProcesses {
    /// Finds the postmaster of the server `pool` talks to: the first line of
    /// `<data_directory>/postmaster.pid`. Fails when the server is not on this machine or its
    /// files cannot be read (then PostgreSQL's CPU cannot be measured from here).
    pub(crate) async fn find(pool: &PgPool) -> anyhow::Result<Self> {
        let data_directory: String = sqlx::query_scalar("SHOW data_directory")
            .fetch_one(pool)
            .await
            .context("SHOW data_directory (needs superuser or pg_read_all_settings)")?;
        let pid_file = PathBuf::from(&data_directory).join("postmaster.pid");
        let postmaster = postmaster_pid(&pid_file)?;
        let processes = Self { postmaster };
        // The backend serving this very connection must be one of the postmaster's children,
        // or the server is another machine's (or another container's) with the same path.
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await?;
        let parent = read_stat(&backend.to_string())
            .with_context(|| {
                format!("backend {backend} is not visible here: is PostgreSQL on this machine?")
            })?
            .ppid;
        if parent != postmaster {
            bail!(
                "backend {backend}'s parent is {parent}, not the postmaster {postmaster} of {}",
                pid_file.display()
            );
        }
        Ok(processes)
    }

    /// CPU seconds of the whole server so far: the postmaster's own, every live child's own
    /// (both in nanoseconds), and what the postmaster's reaped children used (in ticks). Read
    /// before and after a run; the difference is the server's CPU over the run, exited backends
    /// included (a backend that exits between the two reads moves from the live sum to
    /// cutime/cstime, with its time).
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let postmaster = self.postmaster.to_string();
        // A child reaped while /proc is being listed would be counted twice or not at all; its
        // time lands in the postmaster's cutime/cstime, so a listing is kept only when those did
        // not change while it was made.
        for _ in 0..20 {
            let before = read_stat(&postmaster)?;
            let live_ns = read_runtime_ns(&postmaster)? + self.children_runtime_ns()?;
            let after = read_stat(&postmaster)?;
            if before.cutime + before.cstime == after.cutime + after.cstime {
                let reaped = (after.cutime + after.cstime) as f64 / clock_ticks_per_second()?;
                return Ok(live_ns as f64 / 1e9 + reaped);
            }
        }
        bail!(
            "the postmaster {} kept reaping children while its processes were listed",
            self.postmaster
        )
    }

    /// The run time of every live (or not yet reaped) child of the postmaster, in nanoseconds.
    fn children_runtime_ns(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir("/proc")? {
            let name = entry?.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A process that has gone by now was reaped: the caller sees it in cutime.
            if let Ok(stat) = read_stat(pid)
                && stat.ppid == self.postmaster
                && let Ok(runtime) = read_runtime_ns(pid)
            {
                total += runtime;
            }
        }
        Ok(total)
    }
}

fn postmaster_pid(pid_file: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let first = text.lines().next().unwrap_or_default().trim();
    first.parse().with_context(|| {
        format!(
            "the first line of {} is {first:?}, not a pid",
            pid_file.display()
        )
    })
}

/// CPU time spent per request by the application and by PostgreSQL over one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CpuPerRequest {
    pub(crate) app_us_per_request: f64,
    /// `None` when PostgreSQL's processes are not visible from here.
    pub(crate) postgres_us_per_request: Option<f64>,
    /// App ÷ PostgreSQL.
    pub(crate) app_over_postgres: Option<f64>,
}

/// Reads the application's and the server's CPU time around a run.
pub(crate) struct CpuMeter<'a> {
    app_pid: Option<u32>,
    postgres: Option<&'a PostgresProcesses>,
    app_before: f64,
    postgres_before: Option<f64>,
}

impl<'a> CpuMeter<'a> {
    /// Starts counting; `app_pid` is `None` for this process.
    pub(crate) fn start(
        app_pid: Option<u32>,
        postgres: Option<&'a PostgresProcesses>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            app_pid,
            postgres,
            app_before: process_cpu_seconds(app_pid)?,
            postgres_before: postgres.map(PostgresProcesses::cpu_seconds).transpose()?,
        })
    }

    /// The CPU time since `start`, per request of `requests`.
    pub(crate) fn per_request(&self, requests: u64) -> anyhow::Result<CpuPerRequest> {
        let app = process_cpu_seconds(self.app_pid)? - self.app_before;
        let postgres = match (self.postgres, self.postgres_before) {
            (Some(processes), Some(before)) => Some(processes.cpu_seconds()? - before),
            _ => None,
        };
        let per = |seconds: f64| seconds * 1e6 / requests.max(1) as f64;
        let app_us = per(app);
        let postgres_us = postgres.map(per);
        if let Some(negative) = postgres_us.filter(|us| *us < 0.0) {
            // Only rounding can do this: a child reaped during the run moves from the live sum
            // (nanoseconds) to cutime (whole ticks, rounded down), so a run in which the server
            // did less than a tick of other work may come out below zero. No figure, then,
            // rather than a wrong one.
            println!(
                "    warning: PostgreSQL's CPU went down ({negative:.1} µs/request); not reported"
            );
            return Ok(CpuPerRequest {
                app_us_per_request: app_us,
                postgres_us_per_request: None,
                app_over_postgres: None,
            });
        }
        Ok(CpuPerRequest {
            app_us_per_request: app_us,
            postgres_us_per_request: postgres_us,
            app_over_postgres: postgres_us.filter(|p| *p > 0.0).map(|p| app_us / p),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_the_last_parenthesis_of_the_command_name() {
        // A real line of a postgres backend, its command name changed to hold spaces and
        // parentheses.
        let line = "4242 (postgres: a) (b) c) S 812 812 812 0 -1 4194560 1543 0 0 0 \
                    371 96 12 7 20 0 1 0 2934 225161216 3322 18446744073709551615 1 1 0 0 0 \
                    0 4194304 19935232 1266 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                ppid: 812,
                utime: 371,
                stime: 96,
                cutime: 12,
                cstime: 7
            }
        );
    }

    #[test]
    fn this_process_stat_parses_and_names_init_as_the_grandest_parent() {
        let stat = read_stat("self").expect("reads /proc/self/stat");
        assert_eq!(stat.ppid, std::os::unix::process::parent_id());
        assert!(read_stat("1").expect("reads /proc/1/stat").ppid == 0);
    }

    #[test]
    fn schedstat_gives_the_run_time_in_nanoseconds() {
        assert_eq!(
            parse_schedstat("98137401 10494309 349\n").expect("parses"),
            98_137_401
        );
        assert!(parse_schedstat("").is_err());
        assert!(parse_schedstat("-1 0 0").is_err());
        // This process has run, so its main thread's total is not zero.
        assert!(read_runtime_ns("self").expect("reads /proc/self/schedstat") > 0);
    }

    #[test]
    fn a_truncated_line_is_an_error_not_a_zero() {
        assert!(parse_stat("12 (x) S 1 2 3").is_err());
        assert!(parse_stat("no parenthesis at all").is_err());
    }

    #[test]
    fn clock_ticks_are_asked_of_the_system() {
        let ticks = clock_ticks_per_second().expect("sysconf");
        assert!(ticks >= 1.0);
    }
}
