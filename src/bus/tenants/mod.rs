//! Tenants on the bus: their terms (re-read from the config file while running), their
//! request queues (one stream each, see [`Names::tenant_requests_stream`]), and admission
//! (quota and budget, fleet-wide) before any provider is called.
//!
//! [`Names::tenant_requests_stream`]: crate::contract::Names::tenant_requests_stream

mod admit;
pub(super) mod book;
mod queue;

pub use admit::{Admission, Gate, narrowed};
pub use book::{RELOAD_EVERY, TenantBook, follow_file};
pub use queue::{TenantQueue, advisory_subjects, ensure_queue, tenants_with_queues};
