use std::process::ExitCode;

use clap::Parser;

use ai_failover::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome: anyhow::Result<()> = match cli.command {
        Command::CheckConfig { config } => ai_failover::config::load(&config)
            .map(|c| println!("ok: {} provider(s)", c.providers.len()))
            .map_err(Into::into),
        Command::Schemas { out } => ai_failover::contract::schemas::write_all(&out)
            .map(|n| println!("wrote {n} schemas to {}", out.display()))
            .map_err(Into::into),
        Command::Simulate(args) => ai_failover::simulator::run(args).await,
        Command::Setup { config } => {
            async {
                let cfg = ai_failover::config::load(&config)?;
                let client = ai_failover::bus::setup::connect(&cfg.nats).await?;
                ai_failover::bus::setup::ensure(&client, &cfg).await?;
                println!("streams, consumer and buckets are in place");
                Ok(())
            }
            .await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
