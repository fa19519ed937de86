//! What each kind of webhook is sent: the alert record itself (`json`), or the same facts in
//! the shape a chat service or PagerDuty (Events API v2) takes.

use serde_json::{Value, json};

use crate::config::WebhookFormat;
use crate::contract::{AlertRecord, AlertType, Severity};

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Info => "🟢",
        Severity::Warning => "🟠",
        Severity::Critical => "🔴",
    }
}

/// Discord and Teams take a colour per severity.
fn colour(s: Severity) -> u32 {
    match s {
        Severity::Info => 0x2fbf71,
        Severity::Warning => 0xe0a526,
        Severity::Critical => 0xe5484d,
    }
}

fn title(a: &AlertRecord) -> String {
    let about = a
        .provider
        .as_deref()
        .map(|p| format!(" · {p}"))
        .unwrap_or_default();
    format!(
        "{} {} ({}){about}",
        icon(a.severity),
        a.alert_type.as_str(),
        a.severity.as_str()
    )
}

/// PagerDuty's dedup key: one incident per provider outage, one for the fleet's mode, one per
/// provider's budget, slowness or the fleet's stall; a recovery (the mode back to normal,
/// fast again, flowing again) resolves it.
fn incident(a: &AlertRecord) -> (String, &'static str) {
    let p = a.provider.as_deref().unwrap_or("fleet");
    match a.alert_type {
        AlertType::ProviderDown | AlertType::ProviderQuarantined => {
            (format!("ai-failover/provider/{p}"), "trigger")
        }
        AlertType::ProviderRecovered => (format!("ai-failover/provider/{p}"), "resolve"),
        AlertType::ModeChanged if a.to.as_deref() == Some("normal") => {
            ("ai-failover/mode".into(), "resolve")
        }
        AlertType::ModeChanged => ("ai-failover/mode".into(), "trigger"),
        AlertType::BudgetThreshold => match &a.tenant {
            Some(t) => (format!("ai-failover/budget/tenant/{t}"), "trigger"),
            None => (format!("ai-failover/budget/{p}"), "trigger"),
        },
        // Each rate alarm is its own incident (there is no all-clear for it).
        AlertType::DeadLetters => (
            format!("ai-failover/dead-letters/{}", a.alert_id),
            "trigger",
        ),
        AlertType::FleetStalled if a.to.as_deref() == Some("flowing") => {
            ("ai-failover/stalled".into(), "resolve")
        }
        AlertType::FleetStalled => ("ai-failover/stalled".into(), "trigger"),
        AlertType::SlowProvider if a.to.as_deref() == Some("normal") => {
            (format!("ai-failover/slow/{p}"), "resolve")
        }
        AlertType::SlowProvider => (format!("ai-failover/slow/{p}"), "trigger"),
        // A test triggers nothing that stays open.
        AlertType::Test => ("ai-failover/test".into(), "resolve"),
    }
}

/// The body for `format`; `routing_key` is PagerDuty's integration key.
pub fn render(format: WebhookFormat, a: &AlertRecord, routing_key: Option<&str>) -> Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(a).unwrap_or(Value::Null),
        WebhookFormat::Slack => json!({
            "text": format!("{}: {}", title(a), a.message),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", title(a), a.message)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{} · alert {}", a.at.to_rfc3339(), a.alert_id)}]}
            ]
        }),
        WebhookFormat::Discord => json!({
            "content": title(a),
            "embeds": [{"title": title(a), "description": a.message, "color": colour(a.severity),
                        "timestamp": a.at.to_rfc3339(), "footer": {"text": format!("alert {}", a.alert_id)}}]
        }),
        WebhookFormat::Teams => json!({
            "@type": "MessageCard", "@context": "https://schema.org/extensions",
            "summary": title(a), "themeColor": format!("{:06X}", colour(a.severity)),
            "title": title(a), "text": a.message,
            "sections": [{"facts": [
                {"name": "at", "value": a.at.to_rfc3339()},
                {"name": "alert", "value": a.alert_id}
            ]}]
        }),
        WebhookFormat::Pagerduty => {
            let (dedup_key, action) = incident(a);
            json!({
                "routing_key": routing_key.unwrap_or_default(),
                "event_action": action,
                "dedup_key": dedup_key,
                "payload": {
                    "summary": a.message,
                    "source": a.provider.as_deref().unwrap_or("ai-failover"),
                    "severity": a.severity.as_str(),
                    "timestamp": a.at.to_rfc3339(),
                    "component": "ai-failover",
                    "class": a.alert_type.as_str(),
                    "custom_details": a,
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(t: AlertType, to: &str) -> AlertRecord {
        AlertRecord {
            alert_id: "a1".into(),
            alert_type: t,
            severity: Severity::Critical,
            at: crate::contract::now(),
            provider: Some("openai".into()),
            from: Some("healthy".into()),
            to: Some(to.into()),
            message: "openai is down".into(),
            details: Default::default(),
            worker_id: "w".into(),
            tenant: None,
        }
    }

    #[test]
    fn every_format_carries_the_facts() {
        let down = alert(AlertType::ProviderDown, "unhealthy");
        assert_eq!(render(WebhookFormat::Json, &down, None)["alert_id"], "a1");
        let slack = render(WebhookFormat::Slack, &down, None);
        assert!(slack["text"].as_str().unwrap().contains("openai is down"));
        let discord = render(WebhookFormat::Discord, &down, None);
        assert_eq!(discord["embeds"][0]["color"], 0xe5484d);
        let teams = render(WebhookFormat::Teams, &down, None);
        assert_eq!(teams["@type"], "MessageCard");
        let pd = render(WebhookFormat::Pagerduty, &down, Some("rk"));
        assert_eq!(
            (pd["event_action"].as_str(), pd["routing_key"].as_str()),
            (Some("trigger"), Some("rk"))
        );
        let up = render(
            WebhookFormat::Pagerduty,
            &alert(AlertType::ProviderRecovered, "healthy"),
            Some("rk"),
        );
        assert_eq!(up["event_action"], "resolve");
        assert_eq!(
            up["dedup_key"], pd["dedup_key"],
            "the recovery resolves the outage's incident"
        );
    }
}
