//! The v1 wire contract: every message, event and KV record other programs code against,
//! plus the one place that derives subject, stream and bucket names from the prefix.
//!
//! Nothing in here knows about NATS or HTTP; the types are plain serde + schemars data.
//! Changes must be additive: trading components and dashboards decode these shapes.

/// A wire enum: one snake_case name per variant, the same for serde (the wire), schemars (the
/// schemas) and `as_str` (metric labels, logs), with the derives every wire enum has.
macro_rules! wire_enum {
    ($(#[$attr:meta])* $vis:vis enum $name:ident { $($variants:tt)* }) => {
        $(#[$attr])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            schemars::JsonSchema,
            strum::IntoStaticStr,
            strum::VariantArray,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        $vis enum $name { $($variants)* }

        impl $name {
            /// The snake_case name used on the wire and in metric labels.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

mod alert;
mod audit;
mod control;
mod dead_letter;
mod error_class;
mod events;
mod feedback;
mod kv;
mod names;
mod provider_id;
mod report;
mod request;
mod result;
pub mod schemas;
mod secrets;
mod stats;
mod tenant;

pub use alert::*;
pub use audit::*;
pub use control::*;
pub use dead_letter::*;
pub use error_class::*;
pub use events::*;
pub use feedback::*;
pub use kv::*;
pub use names::*;
pub use provider_id::ProviderId;
pub use report::*;
pub use request::*;
pub use result::*;
pub use secrets::*;
pub use stats::*;
pub use tenant::*;

/// Timestamps on the wire are RFC 3339 in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time as a wire timestamp.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}
