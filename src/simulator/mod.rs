//! A provider simulator speaking the OpenAI, Anthropic and Gemini wire APIs, with faults.
//!
//! One listener serves every simulated provider under a path prefix (`/<name>/v1/…`), plus a
//! control API under `/_sim`; a provider may also get a dedicated port, which is what lets it
//! refuse connections for real. Answers are deterministic per symbol, wrapped in each
//! vendor's true envelope; faults (latency, error classes with the vendor's real status, body
//! and headers, outages, hangs, slow or huge bodies, malformed answers, refused connections)
//! are set at start and changed at run time. Every call is counted per request id, so tests
//! can prove a provider was not paid twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ai_failover::simulator::{Api, SimConfig, SimProvider, Simulator};
//! let sim = Simulator::start(SimConfig::local().provider(SimProvider::new("openai", Api::Openai)))
//!     .await?;
//! let base_url = sim.base_url("openai").unwrap(); // http://127.0.0.1:PORT/openai/v1
//! # let _ = base_url;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod answer;
mod body;
mod calls;
mod config;
mod conn;
mod control;
mod faults;
mod plan;
mod routes;
mod server;
mod state;
mod urls;
mod vendor;

pub use answer::market_action;
pub use calls::{CallOutcome, CallRecord, ProviderCalls};
pub use config::{Api, SimConfig, SimProvider};
pub use control::ProviderView;
pub use faults::{ErrorRates, FaultClass, Faults, Latency, Malformed, Outage, SlowDrip};
pub use server::{SimHandle, Simulator};

/// Why the simulator refused a configuration or a change.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No provider of that name is simulated.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// The faults break a rule (rates, ranges).
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    /// The configuration breaks a rule (names, duplicates).
    #[error("invalid simulator config: {0}")]
    InvalidConfig(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}
