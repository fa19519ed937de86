//! The seed's REST API, `/api/ai/failover/<endpoint>`: the control service's endpoints over
//! HTTP, answering exactly what they answer over NATS (the same handlers), with bearer
//! tokens for identity and role, and every call in the audit trail under the NATS name.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};

use crate::bus::audit::Call;
use crate::bus::control::{self, ControlFailure};
use crate::contract::{Actor, AuditChannel, Endpoint, Role};

use super::HttpState;
use super::auth::{self, TOKEN_PARAM};

/// `(path under /api/ai/failover/, endpoint, read with GET)`: the seed's names, which differ
/// from the NATS ones for monitoring and the mode.
const ROUTES: [(&str, Endpoint, bool); 15] = [
    ("status", Endpoint::Status, true),
    ("health-check", Endpoint::HealthCheck, false),
    ("start-monitoring", Endpoint::MonitoringStart, false),
    ("stop-monitoring", Endpoint::MonitoringStop, false),
    ("force-status", Endpoint::ForceStatus, false),
    ("best-provider", Endpoint::BestProvider, true),
    ("test-failover", Endpoint::TestFailover, false),
    ("failover-history", Endpoint::FailoverHistory, true),
    ("health-summary", Endpoint::HealthSummary, true),
    ("mode", Endpoint::ModeSet, false),
    ("quality-summary", Endpoint::QualitySummary, true),
    ("report", Endpoint::Report, true),
    ("keys-set", Endpoint::KeysSet, false),
    ("keys-list", Endpoint::KeysList, false),
    ("keys-delete", Endpoint::KeysDelete, false),
];

/// The REST routes, one per endpoint.
pub fn routes() -> Router<HttpState> {
    let mut router = Router::new();
    for (path, endpoint, read) in ROUTES {
        let path = format!("/api/ai/failover/{path}");
        router = if read {
            router.route(
                &path,
                get(move |s: State<HttpState>, h: HeaderMap, q: RawQuery| {
                    let body = query_body(q.0.as_deref());
                    async move { serve(s, endpoint, h, q.0, body).await }
                }),
            )
        } else {
            router.route(
                &path,
                post(
                    move |s: State<HttpState>, h: HeaderMap, q: RawQuery, body: Bytes| {
                        serve(s, endpoint, h, q.0, Ok(body.to_vec()))
                    },
                ),
            )
        };
    }
    router
}

/// A GET's query string as the endpoint's JSON request: numbers stay numbers, `providers`
/// is a comma-separated list, the token parameter is not an argument.
fn query_body(query: Option<&str>) -> Result<Vec<u8>, String> {
    let mut map = Map::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == TOKEN_PARAM {
            continue;
        }
        let value = if k == "providers" {
            Value::Array(
                v.split(',')
                    .map(|p| Value::String(p.trim().into()))
                    .collect(),
            )
        } else if let Ok(n) = v.parse::<u64>() {
            Value::from(n)
        } else {
            Value::String(v.into_owned())
        };
        if map.insert(k.to_string(), value).is_some() {
            return Err(format!("query parameter `{k}` is given twice"));
        }
    }
    serde_json::to_vec(&Value::Object(map)).map_err(|e| e.to_string())
}

async fn serve(
    State(s): State<HttpState>,
    endpoint: Endpoint,
    headers: HeaderMap,
    query: Option<String>,
    body: Result<Vec<u8>, String>,
) -> Response {
    let caller = auth::caller(&s, &headers, query.as_deref());
    let (actor, granted) = match &caller {
        Some((id, role)) => (Actor::token(id), Some(*role)),
        // With no token configured at all, the reads are as open as the dashboard.
        None if s.cfg.http.tokens.is_empty() => (Actor::unverified(), Some(Role::Viewer)),
        None => (Actor::unverified(), None),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => e.into_bytes(), // not JSON: the handler's parse error names the problem
    };
    let call = Call {
        endpoint,
        channel: AuditChannel::Rest,
        actor,
        body: &body,
    };
    let granted = granted.filter(|_| caller.is_some() || endpoint.role() == Role::Viewer);
    let reply = control::answer(&s.control, &call, granted).await;
    match reply {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(ControlFailure::Denied(why)) if caller.is_none() => auth::unauthorized(&format!(
            "{why}: send `Authorization: Bearer <token>` with a token from [[http.tokens]]"
        )),
        Err(failure) => {
            let status =
                StatusCode::from_u16(failure.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(failure.body())).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_becomes_the_endpoints_json() {
        let body = query_body(Some("limit=5&provider=openai&access_token=secret")).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"limit": 5, "provider": "openai"}));
        let body = query_body(Some("providers=a,%20b&kind=risk")).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"providers": ["a", "b"], "kind": "risk"})
        );
        assert!(query_body(Some("limit=1&limit=2")).is_err());
        assert_eq!(query_body(None).unwrap(), b"{}");
    }

    #[test]
    fn every_endpoint_has_one_route() {
        for e in Endpoint::ALL {
            assert_eq!(
                ROUTES.iter().filter(|(_, r, _)| *r == e).count(),
                1,
                "{e:?}"
            );
        }
        for (_, e, read) in ROUTES {
            assert_eq!(read, e.role() == Role::Viewer, "{e:?}: reads are GETs");
        }
    }
}
