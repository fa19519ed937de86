//! `ai-failover alerts test --webhook ID`: sends one test alert to a configured webhook, the
//! way the fleet would (same body format, `Idempotency-Key`, timeout), and says whether it
//! was accepted.

use anyhow::{Context, bail};

use crate::bus::alerts::WebhookDelivery;
use crate::contract::{AlertRecord, AlertType, Severity};

/// `alerts` arguments.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

/// The `alerts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Send a test alert to one webhook of `[[alerts.webhooks]]`.
    Test {
        #[command(flatten)]
        file: super::ConfigFile,
        /// The webhook's `id`.
        #[arg(long)]
        webhook: String,
    },
}

/// Runs the subcommand.
pub async fn run(args: AlertsArgs) -> anyhow::Result<()> {
    let AlertsCommand::Test { file, webhook } = args.command;
    let cfg = crate::config::load_for_client(&file.config)?;
    let Some(w) = cfg.alerts.webhooks.iter().find(|w| w.id == webhook) else {
        let known: Vec<&str> = cfg.alerts.webhooks.iter().map(|w| w.id.as_str()).collect();
        bail!("no webhook `{webhook}` in [[alerts.webhooks]]; configured: {known:?}");
    };
    let delivery = WebhookDelivery::new(w.clone(), &cfg.alerts)
        .context("the webhook's URL is not set (url, or the variable named by url_env)")?;
    let alert = AlertRecord {
        alert_id: uuid::Uuid::new_v4().to_string(),
        alert_type: AlertType::Test,
        severity: Severity::Info,
        at: crate::contract::now(),
        provider: None,
        from: None,
        to: None,
        message: format!("a test alert for webhook {webhook}, sent by ai-failover alerts test"),
        details: Default::default(),
        worker_id: "ai-failover alerts test".into(),
        tenant: None,
    };
    match delivery.send_once(&alert).await {
        Ok(()) => {
            println!(
                "test alert {} accepted by webhook {webhook} ({})",
                alert.alert_id,
                delivery.destination()
            );
            Ok(())
        }
        Err(why) => bail!(
            "webhook {webhook} ({}) did not accept the test alert: {why}",
            delivery.destination()
        ),
    }
}
