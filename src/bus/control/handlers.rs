//! One function per control endpoint: parse the JSON request, act on the shared state, build
//! the reply. Fleet-level answers read the KV buckets and the events stream, never only this
//! worker's memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::contract::{
    self, Actor, AnalysisRequest, BestProviderReply, BestProviderRequest, Endpoint, ErrorClass,
    FailoverHistoryReply, FailoverHistoryRequest, ForceAction, ForceStatusReply,
    ForceStatusRequest, Forced, ForcedStatus, HealthCheckReply, HealthCheckRequest,
    HealthSummaryReply, Kind, MONITORING_KEY, ManualMode, ModeSetReply, ModeSetRequest,
    MonitoringRecord, MonitoringReply, MonitoringRequest, ProviderSummary, QualitySummaryReply,
    QualitySummaryRequest, ReportReply, ReportRequest, StatusReply, TestFailoverReply,
    TestFailoverRequest,
};
use crate::engine::Job;

use super::super::announce::HealthAnnouncer;
use super::super::audit::Auditor;
use super::super::fleet::FleetState;
use super::super::kv_record::KvRecord;
use super::super::mode::ModeAnnouncer;
use super::super::setup::Bus;
use super::super::{event_log, fleet_view, history, monitor};
use super::failure::ControlFailure;
use crate::engine::Engine;

/// The longest reason kept with a manual mode.
const REASON_MAX: usize = 500;

/// How long a replay of the failover history may take before the endpoint gives up.
const HISTORY_WAIT: Duration = Duration::from_secs(5);
/// How long reading the rollups of a report may take (90 days of minutes is ~130,000 per
/// provider).
const REPORT_WAIT: Duration = Duration::from_secs(20);
/// `failover-history` default and maximum number of events.
const HISTORY_DEFAULT: usize = 50;
const HISTORY_MAX: usize = 1000;
/// Monitoring intervals below this would make the elected worker probe continuously.
const MIN_MONITOR_INTERVAL_MS: u64 = 1_000;

/// What the handlers act on.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub bus: Bus,
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    pub announcer: Arc<HealthAnnouncer>,
    pub mode: Arc<ModeAnnouncer>,
    pub auditor: Auditor,
    pub worker_id: String,
}

impl Ctx {
    fn cfg(&self) -> &Config {
        &self.cfg
    }
}

type Reply = Result<Vec<u8>, ControlFailure>;

/// Answers one request to `endpoint`: the one table tying each endpoint to its handler, whose
/// signature ties it to its request and reply types.
pub(super) async fn handle(ctx: &Ctx, endpoint: Endpoint, actor: &Actor, body: &[u8]) -> Reply {
    let name = endpoint.name();
    match endpoint {
        Endpoint::Status => json(status(ctx).await),
        Endpoint::HealthCheck => json(health_check(ctx, parse(name, body)?).await),
        Endpoint::ForceStatus => json(force_status(ctx, parse(name, body)?).await),
        Endpoint::BestProvider => json(best_provider(ctx, parse(name, body)?).await),
        Endpoint::FailoverHistory => json(failover_history(ctx, parse(name, body)?).await),
        Endpoint::HealthSummary => json(health_summary(ctx).await),
        Endpoint::MonitoringStart => json(monitoring(ctx, true, parse(name, body)?).await),
        Endpoint::MonitoringStop => json(monitoring(ctx, false, parse(name, body)?).await),
        Endpoint::TestFailover => json(test_failover(ctx, parse(name, body)?).await),
        Endpoint::ModeSet => json(mode_set(ctx, actor, parse(name, body)?).await),
        Endpoint::QualitySummary => json(quality_summary(ctx, parse(name, body)?).await),
        Endpoint::Report => json(report(ctx, parse(name, body)?).await),
        Endpoint::KeysSet => json(super::keys::set(ctx, actor, super::keys::parse(body)?).await),
        Endpoint::KeysList => json(super::keys::list(ctx).await),
        Endpoint::KeysDelete => json(super::keys::delete(ctx, parse(name, body)?).await),
    }
}

/// An empty body means "all defaults" (`{}`), so `nats req ai.control.status ''` works.
fn parse<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, ControlFailure> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ControlFailure::BadRequest {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn json<T: Serialize>(reply: Result<T, ControlFailure>) -> Reply {
    serde_json::to_vec(&reply?)
        .map_err(|e| ControlFailure::Unavailable(format!("reply not encoded: {e}")))
}

pub(super) fn known_provider(cfg: &Config, id: &str) -> Result<(), ControlFailure> {
    if cfg.provider(id).is_some() {
        return Ok(());
    }
    Err(ControlFailure::UnknownProvider {
        given: id.to_string(),
        known: cfg.providers.iter().map(|p| p.id.to_string()).collect(),
    })
}

async fn quality_summary(
    ctx: &Ctx,
    req: QualitySummaryRequest,
) -> Result<QualitySummaryReply, ControlFailure> {
    let records = super::super::quality_view::all_records(&ctx.bus.quality, req.kind).await?;
    Ok(QualitySummaryReply { records })
}

async fn report(ctx: &Ctx, req: ReportRequest) -> Result<ReportReply, ControlFailure> {
    let since = req.since.as_deref().unwrap_or("7d");
    let retention = i64::from(ctx.cfg().history.retention_days);
    let span = history::report::parse_since(since)
        .filter(|d| *d <= chrono::TimeDelta::days(retention))
        .ok_or_else(|| {
            ControlFailure::Invalid(format!(
                "since `{since}`: use <n>m, <n>h or <n>d, at most the history's {retention}d"
            ))
        })?;
    let until = crate::engine::clock::wall_now();
    let providers = ctx.cfg().providers.iter().map(|p| p.id.clone()).collect();
    let source = history::read::HistoryStore {
        js: &ctx.bus.js,
        names: &ctx.bus.names,
        budget: &ctx.bus.budget,
        interval_ms: ctx.cfg().history.interval_ms,
    };
    let inputs = history::read::inputs(source, providers, (until - span, until), REPORT_WAIT)
        .await
        .map_err(|e| ControlFailure::Unavailable(crate::telemetry::chain(&e)))?;
    Ok(history::report::build(inputs))
}

async fn status(ctx: &Ctx) -> Result<StatusReply, ControlFailure> {
    let health = &ctx.bus.health;
    let providers = fleet_view::provider_records(health, ctx.cfg())
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    Ok(StatusReply {
        mode: fleet_view::fleet_mode(health).await?,
        providers,
        monitoring: fleet_view::monitoring(health, ctx.cfg()).await.enabled,
        answered_by: ctx.worker_id.clone(),
        at: crate::engine::clock::wall_now(),
    })
}

async fn health_check(
    ctx: &Ctx,
    req: HealthCheckRequest,
) -> Result<HealthCheckReply, ControlFailure> {
    if let Some(p) = &req.provider {
        known_provider(ctx.cfg(), p)?;
    }
    let results = monitor::check_now(&ctx.engine, req.provider.as_deref()).await;
    Ok(HealthCheckReply { results })
}

async fn force_status(
    ctx: &Ctx,
    req: ForceStatusRequest,
) -> Result<ForceStatusReply, ControlFailure> {
    known_provider(ctx.cfg(), &req.provider)?;
    if req.ttl_ms == Some(0) {
        return Err(ControlFailure::Invalid(
            "ttl_ms must be positive (omit it for no expiry)".into(),
        ));
    }
    if req.status == ForceAction::Clear && req.ttl_ms.is_some() {
        return Err(ControlFailure::Invalid(
            "ttl_ms makes no sense with `clear`".into(),
        ));
    }
    let why = req
        .reason
        .as_deref()
        .map_or(String::new(), |r| format!(": {r}"));
    let ttl = req
        .ttl_ms
        .map(|ms| chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64));
    // Written to the shared record: every worker obeys it through its KV watch.
    let change = ctx
        .fleet
        .health()
        .modify(&req.provider, |r, t| match req.status.forced_status() {
            None => {
                r.forced = None;
                r.quarantined = false;
                Some(format!("operator cleared overrides{why}"))
            }
            Some(status) => {
                r.forced = Some(Forced {
                    status,
                    until: ttl.map(|d| t.utc + d),
                    reason: req.reason.clone(),
                });
                if status == ForcedStatus::Up {
                    // Only an operator can lift a quarantine, and `up` says they did.
                    r.quarantined = false;
                }
                let what = format!("{status:?}").to_lowercase();
                Some(format!("operator forced {what}{why}"))
            }
        })
        .await?
        .ok_or_else(|| ControlFailure::Unavailable("the provider record was not written".into()))?;
    ctx.announcer.announce(&change).await;
    Ok(ForceStatusReply {
        record: change.record,
    })
}

async fn best_provider(
    ctx: &Ctx,
    req: BestProviderRequest,
) -> Result<BestProviderReply, ControlFailure> {
    if let Some(list) = &req.providers {
        if list.is_empty() {
            return Err(ControlFailure::Invalid(
                "providers must not be empty when given".into(),
            ));
        }
        for p in list {
            known_provider(ctx.cfg(), p)?;
        }
    }
    let mut request = AnalysisRequest::signal("BEST-PROVIDER");
    request.kind = req.kind.unwrap_or(Kind::Signal);
    request.providers = req.providers;
    let candidates = ctx.engine.candidate_order(&request);
    let mut order: Vec<contract::ProviderId> = Vec::new();
    for (p, _) in &candidates {
        if !order.contains(p) {
            order.push(p.clone());
        }
    }
    let first = candidates.into_iter().next();
    Ok(BestProviderReply {
        provider: first.as_ref().map(|(p, _)| p.clone()),
        model: first.map(|(_, m)| m),
        order,
        mode: fleet_view::fleet_mode(&ctx.bus.health).await?,
    })
}

async fn failover_history(
    ctx: &Ctx,
    req: FailoverHistoryRequest,
) -> Result<FailoverHistoryReply, ControlFailure> {
    if let Some(p) = &req.provider {
        known_provider(ctx.cfg(), p)?;
    }
    let limit = req.limit.unwrap_or(HISTORY_DEFAULT).min(HISTORY_MAX);
    let events = event_log::last_failovers(
        &ctx.bus.js,
        &ctx.bus.names,
        limit,
        req.provider.as_deref(),
        HISTORY_WAIT,
    )
    .await?;
    Ok(FailoverHistoryReply { events })
}

async fn health_summary(ctx: &Ctx) -> Result<HealthSummaryReply, ControlFailure> {
    let mut from: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    event_log::replay_failovers(&ctx.bus.js, &ctx.bus.names, HISTORY_WAIT, |e| {
        total += 1;
        *from.entry(e.from.provider.to_string()).or_default() += 1;
    })
    .await?;
    let mut providers = Vec::new();
    for (r, _) in fleet_view::provider_records(&ctx.bus.health, ctx.cfg()).await? {
        let w = r.window;
        let uptime = if w.calls == 0 {
            1.0
        } else {
            1.0 - f64::from(w.failures) / f64::from(w.calls)
        };
        providers.push(ProviderSummary {
            spend_today_usd: fleet_view::spend_today(&ctx.bus.budget, &r.provider).await?,
            daily_budget_usd: ctx
                .cfg()
                .provider(&r.provider)
                .and_then(|p| p.daily_budget_usd),
            failovers_from: from.get(r.provider.as_str()).copied().unwrap_or(0),
            provider: r.provider,
            status: r.status,
            breaker: r.breaker,
            success_rate: r.success_rate,
            latency_ms_ewma: r.latency_ms_ewma,
            latency_ms_p95: r.latency_ms_p95,
            uptime,
        });
    }
    Ok(HealthSummaryReply {
        mode: fleet_view::fleet_mode(&ctx.bus.health).await?,
        providers,
        failovers_total: total,
        at: crate::engine::clock::wall_now(),
    })
}

async fn monitoring(
    ctx: &Ctx,
    enabled: bool,
    req: MonitoringRequest,
) -> Result<MonitoringReply, ControlFailure> {
    if let Some(ms) = req.interval_ms
        && ms < MIN_MONITOR_INTERVAL_MS
    {
        return Err(ControlFailure::Invalid(format!(
            "interval_ms must be at least {MIN_MONITOR_INTERVAL_MS}"
        )));
    }
    let current = fleet_view::monitoring(&ctx.bus.health, ctx.cfg()).await;
    let record = MonitoringRecord {
        enabled,
        interval_ms: req.interval_ms.unwrap_or(current.interval_ms),
        updated_at: crate::engine::clock::wall_now(),
        updated_by: ctx.worker_id.clone(),
    };
    // An operator switch: the last writer wins, so no compare-and-set.
    KvRecord::new(ctx.bus.health.clone(), "monitoring switch")
        .put(MONITORING_KEY, &record)
        .await?;
    Ok(MonitoringReply {
        enabled,
        interval_ms: record.interval_ms,
    })
}

async fn test_failover(
    ctx: &Ctx,
    req: TestFailoverRequest,
) -> Result<TestFailoverReply, ControlFailure> {
    known_provider(ctx.cfg(), &req.fail_provider)?;
    let symbol = req.symbol.unwrap_or_else(|| "TEST".into());
    if !(1..=64).contains(&symbol.len()) {
        return Err(ControlFailure::Invalid(
            "symbol must be 1..=64 characters".into(),
        ));
    }
    let mut request = AnalysisRequest::signal(&symbol);
    request.request_id = format!("test-failover-{}", uuid::Uuid::new_v4());
    // A gentle uptrend, so a fallback answer has something to read.
    let prices: Vec<serde_json::Value> = (0..20).map(|i| (100.0 + f64::from(i)).into()).collect();
    request.context = Some(serde_json::Map::from_iter([(
        "prices".to_string(),
        serde_json::Value::Array(prices),
    )]));
    let job = Job {
        request,
        published_at: crate::engine::clock::wall_now(),
        tenant: Default::default(),
    };
    let class = req.error_class.unwrap_or(ErrorClass::ServerError);
    // The engine marks every attempt of an injected run synthetic: no health, breaker,
    // budget, cache or event is touched.
    let injected = HashMap::from([(req.fail_provider, class)]);
    let result = ctx.engine.handle_with(job, &injected).await;
    Ok(TestFailoverReply {
        status: result.status,
        answered_by: result.provider.as_ref().map(|p| p.to_string()),
        attempts: result.attempts.clone(),
        result,
    })
}

async fn mode_set(
    ctx: &Ctx,
    actor: &Actor,
    req: ModeSetRequest,
) -> Result<ModeSetReply, ControlFailure> {
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return Err(ControlFailure::Invalid(format!(
            "reason must say why, in 1..={REASON_MAX} characters"
        )));
    }
    let held = req.mode.mode();
    match (held, req.ttl_ms) {
        (_, Some(0)) => {
            return Err(ControlFailure::Invalid(
                "ttl_ms must be positive (omit it to hold until `auto`)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(ControlFailure::Invalid(
                "ttl_ms makes no sense with `auto`".into(),
            ));
        }
        _ => {}
    }
    let now = crate::engine::clock::wall_now();
    let manual = held.map(|mode| ManualMode {
        mode,
        reason: reason.to_string(),
        set_at: now,
        until: req
            .ttl_ms
            .map(|ms| now + chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64)),
        actor: actor.clone(),
    });
    let (mode, manual) = ctx.mode.set_manual(manual, actor, reason).await?;
    Ok(ModeSetReply { mode, manual })
}
