//! `sipas`: parses the command line and runs the command (`cli`, one file per command).
use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};
use sipas_stream::config::Config;

mod bench;
mod cli;
mod progress;

#[tokio::main]
async fn main() -> Result<()> {
    sipas_stream::release_freed_memory_promptly();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref());
    cli::init_logging(cli::log_format(cli.log_format, &config));
    let config = config.context("loading configuration")?;
    match cli.command {
        Command::Run(args) => cli::run::run(config, args).await,
        Command::Migrate => cli::migrate::run(&config).await,
        Command::Topics => cli::topics::run(&config).await,
        Command::Simulate(args) => cli::simulate::run(&config, args).await,
        Command::Status => cli::status::run(&config).await,
        Command::Rebuild => cli::rebuild::run(&config).await,
        Command::Bench(args) => bench::run(&config, cli.config.as_deref(), args).await,
        Command::Import(args) => cli::import::run(&config, args).await,
        Command::Gateway => cli::gateway::run(&config).await,
        Command::GatewayToken(args) => cli::gateway_token::run(args),
        Command::Serve => cli::serve::run(&config).await,
    }
}
