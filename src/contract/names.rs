use super::Kind;

/// Every subject, stream and bucket name, derived from one configurable prefix.
///
/// With the default prefix `ai`: requests on `ai.analysis.request.<kind>` in stream
/// `AI_REQUESTS`, results on `ai.analysis.result.<kind>` in `AI_RESULTS`, events under
/// `ai.events.>` in `AI_EVENTS`, dead letters on `ai.analysis.dead.<kind>` in `AI_DEADLETTER`,
/// and buckets `ai_provider_health`, `ai_outcomes`, `ai_budget`, `ai_decision_cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names::new("ai")
    }
}

/// The name of the durable pull consumer every worker shares.
pub const WORKER_CONSUMER: &str = "workers";
/// The durable consumer on the advisories stream through which workers settle requests
/// JetStream stopped delivering.
pub const SETTLER_CONSUMER: &str = "settlers";

/// The durable consumer on the feedback stream the workers share.
pub const FEEDBACK_CONSUMER: &str = "feedback";
/// The durable consumer on the quality log through which workers fold outcomes into the
/// quality records.
pub const QUALITY_CONSUMER: &str = "quality";

/// The subject token of the fleet's own rollups in `AI_STATS`.
pub const FLEET_STATS: &str = "_fleet";

/// The durable consumer on the alerts stream that delivers to webhook `id`, shared by the
/// workers (one notification per alert, not one per worker).
pub fn alert_consumer(webhook_id: &str) -> String {
    format!("alerts-{webhook_id}")
}

/// The name of the control micro-service.
pub const SERVICE_NAME: &str = "ai-failover";

impl Names {
    /// Names under `prefix` (validated by the config layer: `[A-Za-z0-9_-]+`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    /// The subject prefix, e.g. `ai`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `subject` is a system subject (`$…`: KV, the JetStream API, the server's) or
    /// one of the fleet's own (`<prefix>.…`): never a place to send a request's reply.
    pub fn is_reserved(&self, subject: &str) -> bool {
        subject.starts_with('$')
            || subject
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    fn stream(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix.to_uppercase().replace('-', "_"))
    }

    fn bucket(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix.replace('-', "_"))
    }

    /// `AI_REQUESTS`: work-queue stream of analysis requests.
    pub fn requests_stream(&self) -> String {
        self.stream("REQUESTS")
    }
    /// `AI_RESULTS`: one stored result per request.
    pub fn results_stream(&self) -> String {
        self.stream("RESULTS")
    }
    /// `AI_EVENTS`: health, failover and mode events.
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }
    /// `AI_AUDIT`: one record per control call (who, what, outcome).
    pub fn audit_stream(&self) -> String {
        self.stream("AUDIT")
    }
    /// `AI_FEEDBACK`: execution and outcome reports from the trading components.
    pub fn feedback_stream(&self) -> String {
        self.stream("FEEDBACK")
    }
    /// `AI_QUALITY_LOG`: each counted outcome, once, in the order the quality records fold
    /// them (fleet-internal).
    pub fn quality_log_stream(&self) -> String {
        self.stream("QUALITY_LOG")
    }
    /// `AI_ALERTS`: every alert the fleet decided, replayable.
    pub fn alerts_stream(&self) -> String {
        self.stream("ALERTS")
    }
    /// `AI_STATS`: one rollup per provider (and one for the fleet) per interval.
    pub fn stats_stream(&self) -> String {
        self.stream("STATS")
    }
    /// `AI_DEADLETTER`: rejected requests with their reason.
    pub fn dead_letter_stream(&self) -> String {
        self.stream("DEADLETTER")
    }
    /// `AI_ADVISORIES`: the server's MAX_DELIVERIES advisories about the workers' consumer,
    /// kept until a worker has settled the request (fleet-internal, not part of the contract
    /// other programs code against).
    pub fn advisories_stream(&self) -> String {
        self.stream("ADVISORIES")
    }
    /// The subject of the MAX_DELIVERIES advisory about the workers' consumer.
    pub fn max_deliveries_advisory(&self) -> String {
        self.max_deliveries_advisory_of(&self.requests_stream())
    }
    /// The subject of the MAX_DELIVERIES advisory about the workers' consumer on `stream`
    /// (the requests stream, or a tenant's).
    pub fn max_deliveries_advisory_of(&self, stream: &str) -> String {
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{WORKER_CONSUMER}")
    }

    /// `ai.analysis.request.<kind>`.
    pub fn request(&self, kind: Kind) -> String {
        format!("{}.analysis.request.{}", self.prefix, kind.as_str())
    }
    /// `AI_TENANT_<TENANT>`: the work-queue stream of one tenant's requests. One stream per
    /// tenant because a stream de-duplicates by `Nats-Msg-Id` across everyone who writes to
    /// it: in a shared one, a tenant's request id could suppress another tenant's request.
    pub fn tenant_requests_stream(&self, tenant: &str) -> String {
        self.stream(&format!("TENANT_{}", tenant.to_uppercase()))
    }
    /// The tenant whose request stream `stream` would be, by its name (see
    /// [`Self::tenant_requests_stream`]); never the default tenant. Another fleet's stream
    /// can share the name's start, so check its subjects too.
    pub fn tenant_of_stream(&self, stream: &str) -> Option<String> {
        let t = stream.strip_prefix(&self.stream("TENANT_"))?.to_lowercase();
        (super::is_tenant_id(&t) && t != super::DEFAULT_TENANT).then_some(t)
    }
    /// `ai.tenant.<tenant>.analysis.request.>`: what the server maps a tenant's
    /// `ai.analysis.request.>` to.
    pub fn tenant_requests_filter(&self, tenant: &str) -> String {
        format!("{}.tenant.{tenant}.analysis.request.>", self.prefix)
    }
    /// `ai.tenant.<tenant>.analysis.result.<kind>`: a tenant's results, which its account
    /// sees as `ai.analysis.result.<kind>`.
    pub fn tenant_result(&self, tenant: &str, kind: Kind) -> String {
        format!(
            "{}.tenant.{tenant}.analysis.result.{}",
            self.prefix,
            kind.as_str()
        )
    }
    /// `ai.tenant.*.analysis.result.>`.
    pub fn tenant_results_filter(&self) -> String {
        format!("{}.tenant.*.analysis.result.>", self.prefix)
    }
    /// `ai.tenant.<tenant>.feedback.<kind>`.
    pub fn tenant_feedback(&self, tenant: &str, kind: Kind) -> String {
        format!("{}.tenant.{tenant}.feedback.{}", self.prefix, kind.as_str())
    }
    /// `ai.tenant.<tenant>.feedback.*`.
    pub fn tenant_feedback_filter(&self, tenant: &str) -> String {
        format!("{}.tenant.{tenant}.feedback.*", self.prefix)
    }
    /// `AI_FEEDBACK_<TENANT>`: one tenant's feedback, in a stream of its own for the same
    /// reason as its requests (de-duplication by `Nats-Msg-Id` is per stream).
    pub fn tenant_feedback_stream(&self, tenant: &str) -> String {
        self.stream(&format!("FEEDBACK_{}", tenant.to_uppercase()))
    }
    /// `ai.tenant.<tenant>.reply.<reply_to>`: where a tenant's `reply_to` gets its result; the
    /// tenant's account imports it as `<reply_to>` (its own `_INBOX.…`).
    pub fn tenant_reply(&self, tenant: &str, reply_to: &str) -> String {
        format!("{}.tenant.{tenant}.reply.{reply_to}", self.prefix)
    }
    /// The tenant a subject was mapped to (`ai.tenant.<tenant>.…`), `None` for the plain
    /// subjects of the default tenant.
    pub fn tenant_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".tenant.")?
            .split('.')
            .next()
    }

    /// `ai.analysis.request.>`.
    pub fn requests_filter(&self) -> String {
        format!("{}.analysis.request.>", self.prefix)
    }
    /// `ai.analysis.result.<kind>`.
    pub fn result(&self, kind: Kind) -> String {
        format!("{}.analysis.result.{}", self.prefix, kind.as_str())
    }
    /// `ai.analysis.result.>`.
    pub fn results_filter(&self) -> String {
        format!("{}.analysis.result.>", self.prefix)
    }
    /// `ai.analysis.dead.<kind>`; `kind_token` is the last token of the request subject,
    /// which may not be a known kind (that is one reason to dead-letter).
    pub fn dead_letter(&self, kind_token: &str) -> String {
        format!("{}.analysis.dead.{kind_token}", self.prefix)
    }
    /// `ai.analysis.dead.>`.
    pub fn dead_letter_filter(&self) -> String {
        format!("{}.analysis.dead.>", self.prefix)
    }
    /// `ai.feedback.<kind>`.
    pub fn feedback(&self, kind: Kind) -> String {
        format!("{}.feedback.{}", self.prefix, kind.as_str())
    }
    /// `ai.feedback.*`.
    pub fn feedback_filter(&self) -> String {
        format!("{}.feedback.*", self.prefix)
    }
    /// `ai.analysis.dead.feedback`: where rejected feedback goes.
    pub fn feedback_dead_letter(&self) -> String {
        self.dead_letter("feedback")
    }
    /// `ai.quality.log.<quality key>`.
    pub fn quality_log(&self, key: &str) -> String {
        format!("{}.quality.log.{key}", self.prefix)
    }
    /// `ai.quality.log.>`.
    pub fn quality_log_filter(&self) -> String {
        format!("{}.quality.log.>", self.prefix)
    }
    /// The quality key a quality-log subject is about.
    pub fn quality_key_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".quality.log.")
    }
    /// `ai.alerts.<type>`.
    pub fn alert(&self, alert_type: super::AlertType) -> String {
        format!("{}.alerts.{}", self.prefix, alert_type.as_str())
    }
    /// `ai.alerts.>`.
    pub fn alerts_filter(&self) -> String {
        format!("{}.alerts.>", self.prefix)
    }

    /// `ai.stats.<provider>`: a provider's rollups.
    pub fn stats(&self, provider: &str) -> String {
        format!("{}.stats.{provider}", self.prefix)
    }
    /// `ai.stats._fleet`: the fleet's rollups (modes, requests, dead letters). Provider ids
    /// never start with `_`.
    pub fn fleet_stats(&self) -> String {
        self.stats(FLEET_STATS)
    }
    /// `ai.stats.>`.
    pub fn stats_filter(&self) -> String {
        format!("{}.stats.>", self.prefix)
    }
    /// `ai.events.health.<provider>`.
    pub fn health_event(&self, provider: &str) -> String {
        format!("{}.events.health.{provider}", self.prefix)
    }
    /// `ai.events.failover`.
    pub fn failover_event(&self) -> String {
        format!("{}.events.failover", self.prefix)
    }
    /// `ai.events.mode`.
    pub fn mode_event(&self) -> String {
        format!("{}.events.mode", self.prefix)
    }
    /// `ai.events.>`.
    pub fn events_filter(&self) -> String {
        format!("{}.events.>", self.prefix)
    }
    /// `ai.control` — the control service's endpoint group.
    pub fn control_group(&self) -> String {
        format!("{}.control", self.prefix)
    }
    /// `ai.control.<endpoint>`.
    pub fn control(&self, endpoint: &str) -> String {
        format!("{}.control.{endpoint}", self.prefix)
    }

    /// `ai.audit.<endpoint>`.
    pub fn audit(&self, endpoint: &str) -> String {
        format!("{}.audit.{endpoint}", self.prefix)
    }
    /// `ai.audit.>`.
    pub fn audit_filter(&self) -> String {
        format!("{}.audit.>", self.prefix)
    }

    /// `ai_provider_health`.
    pub fn health_bucket(&self) -> String {
        self.bucket("provider_health")
    }
    /// `ai_outcomes`.
    pub fn outcomes_bucket(&self) -> String {
        self.bucket("outcomes")
    }
    /// `ai_budget`.
    pub fn budget_bucket(&self) -> String {
        self.bucket("budget")
    }
    /// `ai_decision_cache`.
    pub fn cache_bucket(&self) -> String {
        self.bucket("decision_cache")
    }
    /// `ai_signals`: each answered request's advice and what became of it.
    pub fn signals_bucket(&self) -> String {
        self.bucket("signals")
    }
    /// `ai_quality`: how good each provider's, model's and kind's advice has been.
    pub fn quality_bucket(&self) -> String {
        self.bucket("quality")
    }
    /// `ai_quotas`: each tenant's requests admitted per second, for its per-minute quota.
    pub fn quotas_bucket(&self) -> String {
        self.bucket("quotas")
    }
    /// `ai_secrets`: provider API keys, encrypted under the fleet's master key.
    pub fn secrets_bucket(&self) -> String {
        self.bucket("secrets")
    }
    /// `ai_stats_window`: the workers' shares of the current intervals' rollups
    /// (fleet-internal).
    pub fn stats_window_bucket(&self) -> String {
        self.bucket("stats_window")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let n = Names::default();
        assert_eq!(n.requests_stream(), "AI_REQUESTS");
        assert_eq!(n.dead_letter_stream(), "AI_DEADLETTER");
        assert_eq!(n.request(Kind::Signal), "ai.analysis.request.signal");
        for reserved in [
            "$KV.ai_provider_health.openai",
            "$JS.API.INFO",
            "ai.events.mode",
        ] {
            assert!(n.is_reserved(reserved), "{reserved}");
        }
        for free in ["_INBOX.x", "aim.x", "desk.ai.x"] {
            assert!(!n.is_reserved(free), "{free}");
        }
        assert_eq!(n.result(Kind::Risk), "ai.analysis.result.risk");
        assert_eq!(n.health_event("openai"), "ai.events.health.openai");
        assert_eq!(n.dead_letter("bogus"), "ai.analysis.dead.bogus");
        assert_eq!(n.control("force-status"), "ai.control.force-status");
        assert_eq!(n.outcomes_bucket(), "ai_outcomes");
        assert_eq!(n.feedback(Kind::Signal), "ai.feedback.signal");
        assert_eq!(n.feedback_stream(), "AI_FEEDBACK");
        assert_eq!(n.feedback_dead_letter(), "ai.analysis.dead.feedback");
        assert_eq!(
            (n.signals_bucket(), n.quality_bucket()),
            ("ai_signals".into(), "ai_quality".into())
        );
        assert_eq!(
            (n.stats_stream(), n.stats("openai"), n.fleet_stats()),
            (
                "AI_STATS".into(),
                "ai.stats.openai".into(),
                "ai.stats._fleet".into()
            )
        );
        let log = n.quality_log("openai.gpt-4o.signal");
        assert_eq!(n.quality_key_of(&log), Some("openai.gpt-4o.signal"));
    }

    #[test]
    fn a_custom_prefix_renames_everything() {
        let n = Names::new("desk-b");
        assert_eq!(n.events_stream(), "DESK_B_EVENTS");
        assert_eq!(n.health_bucket(), "desk_b_provider_health");
        assert_eq!(n.failover_event(), "desk-b.events.failover");
    }
}
