//! The control micro-service: `ai-failover` on the NATS micro protocol (discoverable with
//! `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`), endpoints `<prefix>.control.<endpoint>` with JSON
//! in and out. Every worker serves it in one queue group, so any one of them answers; the
//! answers come from the fleet's shared state, so it does not matter which.

mod access;
mod failure;
mod handlers;
mod keys;

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE, Request, ServiceExt};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::contract::{AuditChannel, AuditOutcome, Endpoint, Role, SERVICE_NAME};

use super::audit::{self, Call};
use super::setup::BusError;

pub use failure::ControlFailure;
pub use handlers::Ctx;

/// Answers one control call, whichever way it came in: checks the caller may make it, acts,
/// and records it in the audit trail before the caller sees the reply. `granted` is the
/// role the channel established (the REST token's); over NATS the server's permissions and
/// `[control]` decide.
pub async fn answer(
    ctx: &Ctx,
    call: &Call<'_>,
    granted: Option<Role>,
) -> Result<Vec<u8>, ControlFailure> {
    let reply = match access::check(&ctx.cfg.control, call, granted) {
        Err(denied) => Err(denied),
        Ok(()) => handlers::handle(ctx, call.endpoint, &call.actor, call.body).await,
    };
    let (outcome, error) = match &reply {
        Ok(_) => (AuditOutcome::Ok, None),
        Err(f) => (f.outcome(), Some(f.to_string())),
    };
    ctx.auditor.record(call, outcome, error).await;
    reply
}

/// Registers the service and its endpoints, then serves them on a task; returns once every
/// endpoint is subscribed, so a caller may use the service as soon as this returns.
pub async fn start(ctx: Arc<Ctx>, stop: CancellationToken) -> Result<JoinHandle<()>, BusError> {
    let bus = &ctx.bus;
    let setup = |source: async_nats::Error| BusError::Setup {
        what: "control service".into(),
        source,
    };
    let service = bus
        .client
        .service_builder()
        .description("ai-failover fleet control: provider health, overrides, failover history")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(setup)?;
    let group = service.group(bus.names.control_group());
    let mut endpoints = Vec::with_capacity(Endpoint::ALL.len());
    for endpoint in Endpoint::ALL {
        let name = endpoint.name();
        // Micro endpoint names allow no dots; the subject keeps them (`monitoring.start`).
        let added = group
            .endpoint_builder()
            .name(name.replace('.', "-"))
            .add(name)
            .await
            .map_err(setup)?;
        endpoints.push(added.map(move |req| (endpoint, req)).boxed());
    }
    // Once `start` returns, a call must find the endpoints: the subscriptions have to have
    // reached the server, not only the client's outgoing buffer.
    bus.client.flush().await.map_err(|e| setup(e.into()))?;
    Ok(tokio::spawn(async move {
        // Dropping the service would close its endpoints: it lives as long as this task.
        let _service = service;
        let mut requests = futures::stream::select_all(endpoints);
        loop {
            let next = tokio::select! {
                next = requests.next() => next,
                _ = stop.cancelled() => None,
            };
            let Some((endpoint, req)) = next else { break };
            let ctx = ctx.clone();
            // A health check or test-failover may take seconds: never hold up the others.
            tokio::spawn(async move {
                let call = Call {
                    endpoint,
                    channel: AuditChannel::Nats,
                    actor: audit::actor_from_headers(req.message.headers.as_ref()),
                    body: &req.message.payload,
                };
                let reply = answer(&ctx, &call, None).await;
                respond(&req, endpoint, reply).await;
            });
        }
    }))
}

/// Sends the reply. An error goes out with the micro protocol's error headers and a JSON
/// `ControlError` body; async-nats' own error response cannot carry a body, so it is sent
/// as a payload with the headers set (the service's STATS then do not count it as an error).
async fn respond(req: &Request, endpoint: Endpoint, reply: Result<Vec<u8>, ControlFailure>) {
    let endpoint = endpoint.name();
    let sent = match reply {
        Ok(body) => req.respond(Ok(body.into())).await,
        Err(failure) => {
            tracing::info!(endpoint, error = %failure, "control request refused");
            let mut headers = HeaderMap::new();
            headers.insert(NATS_SERVICE_ERROR, failure.header_text().as_str());
            headers.insert(NATS_SERVICE_ERROR_CODE, failure.code().to_string().as_str());
            let body = serde_json::to_vec(&failure.body()).unwrap_or_default();
            req.respond_with_headers(Ok(body.into()), headers).await
        }
    };
    if let Err(e) = sent {
        tracing::warn!(endpoint, error = %e, "control reply not sent");
    }
}
