//! The vendor endpoints of one simulated provider, and the order in which faults apply to a
//! call: connection faults, latency, outage, auth, request validation, injected errors, then
//! the answer and how it is delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::answer::{self, read_prompt, tokens};
use super::body;
use super::calls::{CallOutcome, CallRecord};
use super::conn::Conn;
use super::plan::Plan;
use super::state::{ProviderState, Shared};
use super::vendor::{self, ErrorCtx, ErrorReply, Generation};
use super::{Api, FaultClass, Malformed};

/// Handler state: the simulator and the provider this router serves.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub provider: Arc<ProviderState>,
}

/// The vendor paths of `provider`, unprefixed (the server nests them under `/<name>`).
pub(crate) fn provider_router(ctx: Ctx) -> Router {
    let router = match ctx.provider.api {
        Api::Openai => Router::new()
            .route("/v1/chat/completions", post(generate))
            .route("/v1/models", get(probe)),
        Api::Anthropic => Router::new()
            .route("/v1/messages", post(generate))
            .route("/v1/models", get(probe)),
        // One segment holds `{model}:generateContent`; the router cannot split it.
        Api::Gemini => Router::new().route(
            "/v1beta/models/{target}",
            post(gemini_generate).get(gemini_probe),
        ),
    };
    router.fallback(not_found).with_state(ctx)
}

/// What a handler hands to [`serve_call`].
struct Call {
    probe: bool,
    path_model: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

async fn generate(
    State(ctx): State<Ctx>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        probe: false,
        path_model: None,
        query,
        headers,
        body,
    };
    serve_call(ctx, conn, call).await
}

async fn probe(
    State(ctx): State<Ctx>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let call = Call {
        probe: true,
        path_model: None,
        query,
        headers,
        body: Bytes::new(),
    };
    serve_call(ctx, conn, call).await
}

async fn gemini_generate(
    State(ctx): State<Ctx>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(model) = target.strip_suffix(":generateContent") else {
        let path = format!("/v1beta/models/{target}");
        return reply(Api::Gemini, vendor::not_found(Api::Gemini, "POST", &path));
    };
    let call = Call {
        probe: false,
        path_model: Some(model.to_owned()),
        query,
        headers,
        body,
    };
    serve_call(ctx, conn, call).await
}

async fn gemini_probe(
    State(ctx): State<Ctx>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Path(model): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let call = Call {
        probe: true,
        path_model: Some(model),
        query,
        headers,
        body: Bytes::new(),
    };
    serve_call(ctx, conn, call).await
}

async fn not_found(State(ctx): State<Ctx>, method: Method, uri: Uri) -> Response {
    let api = ctx.provider.api;
    reply(api, vendor::not_found(api, method.as_str(), uri.path()))
}

/// The request id a client sent, OpenAI's header first.
fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-client-request-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .map(str::to_owned)
}

/// Sleeps unless the simulator shuts down first (false then).
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    if d.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Builds one log line; the outcome and status are filled in when known. A call whose
/// client hangs up first is logged as `abandoned` when its handler is dropped, so every call
/// that reached the provider is in the log.
struct Logger<'a> {
    ctx: &'a Ctx,
    model: String,
    request_id: Option<String>,
    probe: bool,
    started: Instant,
    logged: std::sync::atomic::AtomicBool,
}

impl Drop for Logger<'_> {
    fn drop(&mut self) {
        if !self.logged.load(std::sync::atomic::Ordering::Relaxed) {
            self.log(CallOutcome::Abandoned, None);
        }
    }
}

impl Logger<'_> {
    fn log(&self, outcome: CallOutcome, http_status: Option<u16>) {
        self.logged
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.ctx.shared.record(CallRecord {
            provider: self.ctx.provider.name.clone(),
            model: self.model.clone(),
            request_id: self.request_id.clone(),
            probe: self.probe,
            outcome,
            http_status,
            latency_ms: self.started.elapsed().as_millis() as u64,
            at: chrono::Utc::now(),
        });
    }
}

async fn serve_call(ctx: Ctx, conn: Conn, call: Call) -> Response {
    let api = ctx.provider.api;
    let request_id = request_id(&call.headers);
    ctx.shared
        .count(&ctx.provider.name, call.probe, request_id.as_deref());
    let plan = ctx.provider.plan();
    let mut log = Logger {
        ctx: &ctx,
        model: call.path_model.clone().unwrap_or_default(),
        request_id,
        probe: call.probe,
        started: Instant::now(),
        logged: std::sync::atomic::AtomicBool::new(false),
    };
    let shutdown = ctx.shared.shutdown.clone();
    // Connection faults come first: they happen before any HTTP is spoken.
    if plan.refuse {
        conn.kill();
        log.log(CallOutcome::Refused, None);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if plan.hang {
        log.log(CallOutcome::Hung, None);
        shutdown.cancelled().await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // Over the concurrency limit: refused at once, before any thinking.
    let _admitted = if call.probe {
        None
    } else {
        match ctx.provider.admit(plan.max_concurrent) {
            Some(place) => Some(place),
            None => {
                let class = FaultClass::RateLimited;
                let e = vendor::error(api, class, &ErrorCtx::probe(plan.retry_after_s));
                log.log(CallOutcome::Error(class), Some(e.status));
                return reply(api, e);
            }
        }
    };
    if !pause(plan.delay, &shutdown).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if plan.outage {
        let e = vendor::outage(api);
        log.log(CallOutcome::Outage, Some(e.status));
        return reply(api, e);
    }
    if let Some(expected) = &ctx.provider.expected_key {
        let presented = vendor::presented_key(api, &call.headers, call.query.as_deref());
        if presented.as_deref() != Some(expected.as_str()) {
            let e = vendor::auth_error(api, presented.as_deref());
            log.log(CallOutcome::Unauthorized, Some(e.status));
            return reply(api, e);
        }
    }
    if call.probe {
        if let Some(class) = plan.class.filter(|c| c.hits_probes()) {
            if class == FaultClass::Timeout && !pause(plan.timeout_hold, &shutdown).await {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let e = vendor::error(api, class, &ErrorCtx::probe(plan.retry_after_s));
            log.log(CallOutcome::Error(class), Some(e.status));
            return reply(api, e);
        }
        log.log(CallOutcome::Ok, Some(200));
        let models = match &call.path_model {
            Some(m) => vec![m.clone()],
            None => ctx.provider.models(),
        };
        return ok_json(api, vendor::models(api, &models));
    }
    let parsed = match vendor::parse(api, &call.headers, &call.body, call.path_model.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            log.log(CallOutcome::Error(FaultClass::BadRequest), Some(e.status));
            return reply(api, e);
        }
    };
    ctx.provider.saw_model(&parsed.model);
    log.model = parsed.model.clone();
    answer_call(&ctx, &plan, &parsed, &log).await
}

/// Injected errors, or the answer itself.
async fn answer_call(
    ctx: &Ctx,
    plan: &Plan,
    parsed: &vendor::Parsed,
    log: &Logger<'_>,
) -> Response {
    let api = ctx.provider.api;
    let asked = read_prompt(&parsed.prompt);
    let text = answer::answer(&asked, &parsed.prompt, plan.wrong_advice).to_string();
    let generation = Generation {
        model: parsed.model.clone(),
        input_tokens: tokens(parsed.prompt.len()),
        output_tokens: tokens(text.len()),
        text,
    };
    let malformed = match plan.class {
        Some(FaultClass::InvalidResponse) => {
            Some(plan.malformed.unwrap_or(Malformed::InvalidSignal))
        }
        Some(FaultClass::ContentFiltered) => {
            log.log(CallOutcome::Error(FaultClass::ContentFiltered), Some(200));
            return ok_json(api, vendor::filtered(api, &generation));
        }
        Some(class) => {
            if class == FaultClass::Timeout && !pause(plan.timeout_hold, &ctx.shared.shutdown).await
            {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let e = vendor::error(
                api,
                class,
                &ErrorCtx {
                    model: &parsed.model,
                    retry_after_s: plan.retry_after_s,
                    input_tokens: generation.input_tokens,
                },
            );
            log.log(CallOutcome::Error(class), Some(e.status));
            return reply(api, e);
        }
        None => plan.malformed,
    };
    if let Some(kind) = malformed {
        log.log(CallOutcome::Malformed, Some(200));
        return malformed_reply(api, kind, generation);
    }
    log.log(CallOutcome::Ok, Some(200));
    if let Some(n) = plan.huge_body_bytes {
        return with_headers(api, StatusCode::OK, Vec::new(), body::huge(n));
    }
    let bytes = Bytes::from(vendor::success(api, &generation).to_string());
    let body = match plan.drip {
        Some(d) => body::drip(bytes, d, ctx.shared.shutdown.clone()),
        None => Body::from(bytes),
    };
    with_headers(api, StatusCode::OK, Vec::new(), body)
}

fn malformed_reply(api: Api, kind: Malformed, mut g: Generation) -> Response {
    let body = match kind {
        Malformed::TruncatedJson => {
            let full = vendor::success(api, &g).to_string();
            full[..full.len() / 2].to_owned()
        }
        Malformed::NotJson => {
            let html = "<html><head><title>502 Bad Gateway</title></head>\
                        <body><center><h1>502 Bad Gateway</h1></center></body></html>";
            let mut r = Response::new(Body::from(html));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return r;
        }
        Malformed::TextNotJson => {
            g.text = "I think this looks like a buy, with moderate confidence.".into();
            vendor::success(api, &g).to_string()
        }
        Malformed::InvalidSignal => {
            g.text = answer::invalid_signal().to_string();
            vendor::success(api, &g).to_string()
        }
    };
    with_headers(api, StatusCode::OK, Vec::new(), Body::from(body))
}

fn ok_json(api: Api, v: Value) -> Response {
    with_headers(api, StatusCode::OK, Vec::new(), Body::from(v.to_string()))
}

/// A vendor error as a response.
fn reply(api: Api, e: ErrorReply) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    with_headers(api, status, e.headers, Body::from(e.body.to_string()))
}

fn with_headers(
    api: Api,
    status: StatusCode,
    extra: Vec<(&'static str, String)>,
    body: Body,
) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let content_type = match api {
        Api::Gemini => "application/json; charset=UTF-8",
        _ => "application/json",
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in vendor::common_headers(api).into_iter().chain(extra) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}
