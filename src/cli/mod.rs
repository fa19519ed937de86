//! The `ai-failover` command line: the worker, the simulator, and the clients people use
//! (`publish`, `status`, `watch`, `control`, `audit`).
//!
//! A command that cannot go on says why and exits: here (unlike the library) a panic with
//! a message is an acceptable last resort.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alerts;
pub mod audit;
pub mod client;
pub mod control;
pub mod keys;
pub mod publish;
pub mod quality;
pub mod report;
pub mod simulate;
pub mod status;
pub mod watch;

pub mod bench;
pub mod demo;
pub mod local;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `--config FILE` (or `AI_FAILOVER_CONFIG`), shared by every command that reads the config.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFile {
    /// The TOML configuration file.
    #[arg(
        long,
        short,
        env = "AI_FAILOVER_CONFIG",
        default_value = "config/example.toml"
    )]
    pub config: PathBuf,
}

/// ai-failover: keep AI-driven trading running when AI providers fail.
#[derive(Debug, Parser)]
#[command(name = "ai-failover", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmarks: throughput vs a pass-through loop, added latency, failover timing, scale
    /// and memory; prints a table and writes JSON.
    Bench(bench::BenchArgs),
    /// A live demo: NATS, the simulator, workers, traffic, an outage and its recovery.
    Demo(demo::DemoArgs),
    /// Run one worker of the fleet until SIGTERM or Ctrl-C.
    Worker {
        #[command(flatten)]
        file: ConfigFile,
        /// Worker id (default: host, pid and a random suffix).
        #[arg(long, env = "AI_FAILOVER_WORKER_ID")]
        id: Option<String>,
        /// Log lines as human-readable text or one JSON object per line.
        #[arg(long, env = crate::telemetry::LogFormat::ENV, value_enum, default_value = "text")]
        log_format: crate::telemetry::LogFormat,
    },
    /// Check a configuration file and print what is wrong with it.
    CheckConfig {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Write the JSON Schemas of every wire type to a directory.
    Schemas {
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Run the provider simulator (OpenAI, Anthropic and Gemini wire APIs, with faults).
    Simulate(simulate::SimulateArgs),
    /// Create (or verify) the streams, consumer and KV buckets.
    Setup {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Publish one analysis request and print its result.
    Publish(publish::PublishArgs),
    /// Print the provider table and fleet mode from the shared KV.
    Status(status::StatusArgs),
    /// Follow health, failover and mode events as they happen.
    Watch(watch::WatchArgs),
    /// Call an endpoint of the control service and print the reply.
    Control(control::ControlArgs),
    /// List the audit trail: who called which control endpoint, and how it ended.
    Audit(audit::AuditArgs),
    /// Alert delivery: `alerts test --webhook ID` sends a test alert to a webhook.
    Alerts(alerts::AlertsArgs),
    /// How good each provider's advice has been: hit rate, mean signed return and
    /// calibration per provider, model and kind (and of the cache and the fallback).
    Quality(quality::QualityArgs),
    /// Availability, outages, MTTR, latency trend, cost per day and failovers per hour of
    /// each provider, and the fleet's mode timeline, from the history (`AI_STATS`).
    Report(report::ReportArgs),
    /// Provider keys in the encrypted store: `keys set --provider ID` (key on standard input,
    /// validated by the provider first), `keys list`, `keys delete --provider ID`.
    Keys(keys::KeysArgs),
}
