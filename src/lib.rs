//! ai-failover: a NATS JetStream worker fleet that keeps AI-driven trading running when
//! LLM providers fail.
//!
//! Layers, one direction of dependency (see `DESIGN.md`):
//! `contract` (wire types) ← `providers` (HTTP adapters, the `Provider` trait) ←
//! `engine` (failover logic, no I/O) ← `bus` (JetStream, KV, control service);
//! `config`, `telemetry`, `simulator` and `cli` sit beside them.

pub mod bus;
pub mod cli;
pub mod config;
pub mod contract;
pub mod engine;
pub mod providers;
pub mod simulator;
pub mod telemetry;
