//! Alerts that reach people: decided once for the fleet (`desk`, from what `decide` finds
//! worth saying), stored in `AI_ALERTS`, delivered to each `[[alerts.webhooks]]` by a consumer
//! the workers share (`webhook`). `stall` watches for a fleet that stopped answering.

pub mod decide;
pub mod desk;
pub mod format;
pub mod stall;
pub mod webhook;

pub use desk::AlertDesk;
pub use stall::StallWatch;
pub use webhook::WebhookDelivery;
