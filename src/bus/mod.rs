//! The NATS side: streams, consumer and buckets, the consume loop, publishing, the shared
//! health store, fleet mode and the control service.

pub mod advisories;
pub mod control;
pub mod decode;
pub mod event_log;
pub mod events;
pub mod fleet;
pub mod fleet_view;
pub mod health_store;
pub mod hold;
pub mod http;
pub mod monitor;
pub mod outcomes;
pub mod prober;
pub mod publish;
pub mod runtime;
pub mod setup;
pub mod watch;
pub mod worker;
