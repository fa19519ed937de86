//! The NATS side: streams, consumer and buckets, the consume loop, publishing, the shared
//! health store and the control service.

pub mod setup;
