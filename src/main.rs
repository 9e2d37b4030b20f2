//! The `mercado` binary: reads the command line, starts the logs and runs one command — by
//! default `serve`, through the same [`mercado::startup::Application`] the end-to-end tests
//! start. Everything it does is a call into the `mercado` library or another crate of the
//! workspace; nothing depends on it.

mod cli;
mod data_cli;
mod observe_cli;

use anyhow::Context;
use clap::Parser;
use mercado::{
    settings::Settings,
    startup::{Application, connect},
};

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is not.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        return Err(error).context("reading .env");
    }
    let cli = Cli::parse();
    let settings = Settings::from(cli.settings);
    mercado::telemetry::init(&settings.log)?;

    match cli.command.unwrap_or_default() {
        Command::Serve(args) => {
            let application = Application::build(settings, args.options()).await?;
            application.run_until_stopped().await
        }
        Command::Migrate { action } => cli::migrate(&connect(&settings).await?, action).await,
        Command::Demo { json, html } => {
            observe_cli::demo(&connect(&settings).await?, json, html.as_deref()).await
        }
        Command::Compare { json, html } => {
            observe_cli::compare(&connect(&settings).await?, json, html.as_deref()).await
        }
        Command::Seed(args) => data_cli::run_seed(&connect(&settings).await?, args).await,
        Command::Export(args) => data_cli::run_export(&connect(&settings).await?, args).await,
    }
}
