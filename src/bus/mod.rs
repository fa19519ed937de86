//! The NATS side: streams, consumer and buckets, the consume loop, publishing, the fleet's
//! shared records, and the services around the consume loop.

pub mod advisories;
pub mod alerts;
pub mod announce;
pub mod audit;
pub mod clock_sync;
pub mod consume;
pub mod control;
pub mod decode;
pub mod event_log;
pub mod events;
pub mod feedback;
pub mod fleet;
pub mod fleet_health;
pub mod fleet_view;
pub mod health_store;
pub mod history;
pub mod hold;
pub mod http;
pub mod kv_record;
pub mod kv_watch;
pub mod lease;
pub mod mode;
pub mod monitor;
pub mod outcomes;
pub mod prober;
pub mod publish;
pub mod quality_fold;
pub mod quality_view;
pub mod runtime;
pub mod secrets;
pub mod setup;
pub mod signals;
pub mod spend;
pub mod watch;
pub mod worker;
