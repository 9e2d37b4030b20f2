//! The `mercado` binary's command line, run as a user runs it: what `--help` shows of the
//! settings, and never of a password.

use std::process::Command;

/// `mercado --help`, with `DATABASE_URL` set to a URL holding a password.
fn help_with_a_secret_in_the_environment() -> anyhow::Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_mercado"))
        .arg("--help")
        .env(
            "DATABASE_URL",
            "postgres://app:s3cret@db.example:5432/mercado",
        )
        .output()?;
    anyhow::ensure!(output.status.success(), "mercado --help failed: {output:?}");
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn help_shows_the_default_database_url_and_never_the_password_in_the_environment()
-> anyhow::Result<()> {
    let help = help_with_a_secret_in_the_environment()?;

    assert!(
        help.contains("[env: DATABASE_URL] [default: sqlite://mercado.db?mode=rwc]"),
        "{help}"
    );
    assert!(!help.contains("s3cret"), "{help}");
    Ok(())
}
