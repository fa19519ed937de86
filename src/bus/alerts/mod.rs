//! Alerts that reach people: decided once for the fleet (`desk`, from what `decide` finds
//! worth saying), stored in `AI_ALERTS`, delivered to each `[[alerts.webhooks]]` by a consumer
//! the workers share (`webhook`).

pub mod decide;
pub mod desk;
pub mod format;
pub mod webhook;

pub use desk::AlertDesk;
pub use webhook::WebhookDelivery;
