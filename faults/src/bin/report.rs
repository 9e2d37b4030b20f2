//! Render the fault suite's JSON records as the Markdown tables of `docs/reliability.md`.
//!
//! `report [DIR] [--out FILE]`: DIR defaults to `FAULTS_REPORT_DIR`; the tables go to FILE, or
//! to standard output.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut dir: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" | "-o" => out = Some(PathBuf::from(args.next().context("--out needs a file")?)),
            "--help" | "-h" => {
                println!(
                    "report [DIR] [--out FILE]: the fault records in DIR (default $FAULTS_REPORT_DIR) as Markdown"
                );
                return Ok(());
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => bail!("unexpected argument {arg}"),
        }
    }
    let dir = match dir {
        Some(dir) => dir,
        None => PathBuf::from(
            std::env::var_os("FAULTS_REPORT_DIR")
                .context("give a directory, or set FAULTS_REPORT_DIR")?,
        ),
    };
    let records = mercado_faults::report::read_records(&dir)?;
    if records.is_empty() {
        bail!("no *.json records in {}", dir.display());
    }
    let markdown = mercado_faults::report::render_markdown(&records);
    match out {
        Some(path) => {
            std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{markdown}");
            Ok(())
        }
    }
}
