use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Timestamp;

wire_enum! {
    /// Why a request was dead-lettered.
    pub enum DeadLetterClass {
        /// Not JSON, or not the request shape at all.
        InvalidJson,
        /// JSON, but a field breaks the contract (bad request_id, kind mismatch, ...).
        InvalidRequest,
        /// Larger than `worker.max_request_bytes`.
        TooLarge,
        /// Delivered `max_deliver` times without being acknowledged.
        MaxDeliveries,
        /// Feedback about a request the fleet has no signal for (waited 10 s for a result
        /// that might still be on its way).
        UnknownRequest,
    }
}

/// The error part of a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetterError {
    pub class: DeadLetterClass,
    pub message: String,
}

/// Largest prefix of a rejected payload kept in a dead letter.
pub const DEAD_LETTER_PAYLOAD_LIMIT: usize = 64 * 1024;

/// `<prefix>.analysis.dead.<kind>`: a request that will never be served, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The kind token of the request subject (may be unknown: that is a reason too).
    pub kind: String,
    pub subject: String,
    pub error: DeadLetterError,
    /// The first 64 KiB of the payload, base64.
    pub payload_b64: String,
    pub payload_bytes: u64,
    pub delivery_count: u64,
    pub worker_id: String,
    pub at: Timestamp,
}
