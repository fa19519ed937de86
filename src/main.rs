use std::process::ExitCode;

use clap::Parser;

use ai_failover::cli::{Cli, Command};
use ai_failover::telemetry::{LogFormat, Options};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `worker` has the flag; other commands follow the environment variable.
    let log_format = match &cli.command {
        Command::Worker { log_format, .. } => *log_format,
        _ => LogFormat::from_env(),
    };
    // The demo and the benchmarks print their own story; library chatter would drown it.
    let default_filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info",
    };
    // Held to the end of main: dropping it flushes spans still queued for export.
    let _telemetry = ai_failover::telemetry::init(Options {
        log_format,
        default_filter,
    });
    let outcome: anyhow::Result<()> = match cli.command {
        Command::CheckConfig { file } => ai_failover::config::load(&file.config)
            .map(|c| println!("ok: {} provider(s)", c.providers.len()))
            .map_err(Into::into),
        Command::Schemas { out } => ai_failover::contract::schemas::write_all(&out)
            .map(|n| println!("wrote {n} schemas to {}", out.display()))
            .map_err(Into::into),
        Command::Bench(args) => ai_failover::cli::bench::run(args).await,
        Command::Demo(args) => ai_failover::cli::demo::run(args).await,
        Command::Worker { file, id, .. } => run_worker(file.config, id).await,
        Command::Simulate(args) => ai_failover::cli::simulate::run(args).await,
        Command::Publish(args) => ai_failover::cli::publish::run(args).await,
        Command::Status(args) => ai_failover::cli::status::run(args).await,
        Command::Watch(args) => ai_failover::cli::watch::run(args).await,
        Command::Control(args) => ai_failover::cli::control::run(args).await,
        Command::Audit(args) => ai_failover::cli::audit::run(args).await,
        Command::Quality(args) => ai_failover::cli::quality::run(args).await,
        Command::Report(args) => ai_failover::cli::report::run(args).await,
        Command::Keys(args) => ai_failover::cli::keys::run(args).await,
        Command::Alerts(args) => ai_failover::cli::alerts::run(args).await,
        Command::Setup { file } => {
            async {
                let cfg = ai_failover::config::load(&file.config)?;
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

async fn run_worker(config: std::path::PathBuf, id: Option<String>) -> anyhow::Result<()> {
    let mut cfg = ai_failover::config::load(&config)?;
    use ai_failover::engine::clock;
    if let Ok(skew) = std::env::var(clock::OFFSET_ENV) {
        let ms: i64 = skew.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{}={skew:?} is not a whole number of milliseconds; fix: e.g. {}=5000 (or unset it)",
                clock::OFFSET_ENV,
                clock::OFFSET_ENV
            )
        })?;
        tracing::warn!(
            skew_ms = ms,
            "this worker's clock is skewed on purpose ({})",
            clock::OFFSET_ENV
        );
        clock::inject_skew_ms(ms);
    }
    if id.is_some() {
        cfg.worker.id = id;
    }
    let running = ai_failover::bus::runtime::start(std::sync::Arc::new(cfg), None).await?;
    tracing::info!(worker_id = running.worker_id(), "worker started");
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (on Ctrl-C alone where SIGTERM cannot be caught).
async fn wait_for_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "SIGTERM cannot be caught; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
