//! The failover engine: selection, circuit breakers, error policy, deadlines, budgets, modes,
//! decision cache and rule-based fallback. No I/O of its own: time comes from
//! [`clock::Clock`] (and tokio's pausable clock), providers from the
//! [`crate::providers::Provider`] trait, fleet state through [`ports::Fleet`], and everything
//! it does leaves through [`ports::EventSink`].

pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod concurrency;
pub mod fallback;
pub mod modes;
pub mod policy;
pub mod ports;
pub mod probing;
pub mod quality;
pub mod retry_budget;
mod run;
pub mod selection;
pub mod slot;
pub mod stats;
pub mod tenancy;

pub use run::{Engine, Job};
