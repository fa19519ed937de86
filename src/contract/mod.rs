//! The v1 wire contract: every message, event and KV record other programs code against,
//! plus the one place that derives subject, stream and bucket names from the prefix.
//!
//! Nothing in here knows about NATS or HTTP; the types are plain serde + schemars data.
//! Changes must be additive: trading components and dashboards decode these shapes.

mod control;
mod dead_letter;
mod error_class;
mod events;
mod kv;
mod names;
mod provider_id;
mod request;
mod result;
pub mod schemas;

pub use control::*;
pub use dead_letter::*;
pub use error_class::*;
pub use events::*;
pub use kv::*;
pub use names::*;
pub use provider_id::ProviderId;
pub use request::*;
pub use result::*;

/// Timestamps on the wire are RFC 3339 in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time as a wire timestamp.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}
