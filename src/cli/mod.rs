//! The `ai-failover` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Run one worker of the fleet until SIGTERM or Ctrl-C.
    Worker {
        #[arg(
            long,
            short,
            env = "AI_FAILOVER_CONFIG",
            default_value = "config/example.toml"
        )]
        config: PathBuf,
        /// Worker id (default: host, pid and a random suffix).
        #[arg(long, env = "AI_FAILOVER_WORKER_ID")]
        id: Option<String>,
        /// Log lines as human-readable text or one JSON object per line.
        #[arg(long, env = crate::telemetry::LogFormat::ENV, value_enum, default_value = "text")]
        log_format: crate::telemetry::LogFormat,
    },
    /// Check a configuration file and print what is wrong with it.
    CheckConfig {
        #[arg(
            long,
            short,
            env = "AI_FAILOVER_CONFIG",
            default_value = "config/example.toml"
        )]
        config: PathBuf,
    },
    /// Write the JSON Schemas of every wire type to a directory.
    Schemas {
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Run the provider simulator (OpenAI, Anthropic and Gemini wire APIs, with faults).
    Simulate(crate::simulator::SimulateArgs),
    /// Create (or verify) the streams, consumer and KV buckets.
    Setup {
        #[arg(
            long,
            short,
            env = "AI_FAILOVER_CONFIG",
            default_value = "config/example.toml"
        )]
        config: PathBuf,
    },
}
