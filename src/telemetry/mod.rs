//! Logs, traces and metrics.

pub mod propagation;
