//! The failover engine: selection, circuit breakers, error policy, deadlines, budgets, modes,
//! decision cache and rule-based fallback. No I/O: time comes from [`clock::Clock`], providers
//! from the [`crate::providers::Provider`] trait, shared state through ports.
