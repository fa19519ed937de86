//! An open-loop load generator: publishes requests over JetStream at a fixed rate whatever the
//! fleet does, applies the scenario's fault changes on time, and records every result and
//! every health and mode event with the moment it arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use rand::{Rng, SeedableRng};

use super::catalog::Plan;
use crate::contract::{AnalysisResult, HealthEvent, ModeEvent, Names, Timestamp};
use crate::simulator::SimHandle;

/// A request as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    /// Since the run started.
    pub at: Duration,
    pub deadline_ms: Option<u64>,
}

/// A result as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Since the run started.
    pub at: Duration,
    pub result: AnalysisResult,
}

/// Everything a run saw.
#[derive(Debug, Default)]
pub struct Recording {
    pub sent: Vec<Sent>,
    /// The first result of each request id.
    pub results: HashMap<String, Received>,
    pub health: Vec<(Duration, HealthEvent)>,
    pub modes: Vec<(Duration, ModeEvent)>,
    /// Wall-clock time of the run's start, to place the simulator's call log.
    pub t0: Timestamp,
    /// Fault changes the simulator refused (none expected).
    pub fault_errors: Vec<String>,
    /// Results delivered again for a request already answered (live subscribers' view).
    pub duplicates: usize,
}

#[derive(Default)]
struct Inbox {
    results: HashMap<String, Received>,
    duplicates: usize,
    health: Vec<(Duration, HealthEvent)>,
    modes: Vec<(Duration, ModeEvent)>,
}

/// How long results are awaited after the last request was sent.
fn drain_limit(plan: &Plan) -> Duration {
    let deadline = plan.deadlines_ms.map_or(30_000, |(_, max)| max);
    Duration::from_millis(deadline) + Duration::from_secs(5)
}

/// Runs `plan` at `rate` requests per second against the fleet at `nats_url`.
pub async fn run(
    nats_url: &str,
    sim: &SimHandle,
    plan: &Plan,
    rate: f64,
    seed: u64,
) -> anyhow::Result<Recording> {
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::new(client.clone());
    let names = Names::default();
    let mut results = client.subscribe(names.results_filter()).await?;
    let mut events = client.subscribe(names.events_filter()).await?;
    client.flush().await?;

    let start = Instant::now();
    let t0 = chrono::Utc::now();
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let collector = tokio::spawn({
        let inbox = inbox.clone();
        async move {
            loop {
                tokio::select! {
                    Some(m) = results.next() => {
                        let at = start.elapsed();
                        if let Ok(result) = serde_json::from_slice::<AnalysisResult>(&m.payload) {
                            let mut inbox = inbox.lock();
                            if inbox.results.contains_key(&result.request_id) {
                                inbox.duplicates += 1;
                            } else {
                                inbox.results.insert(result.request_id.clone(), Received { at, result });
                            }
                        }
                    }
                    Some(m) = events.next() => {
                        let at = start.elapsed();
                        let mut inbox = inbox.lock();
                        if m.subject.as_str().ends_with(".mode") {
                            if let Ok(e) = serde_json::from_slice::<ModeEvent>(&m.payload) {
                                inbox.modes.push((at, e));
                            }
                        } else if m.subject.as_str().contains(".health.")
                            && let Ok(e) = serde_json::from_slice::<HealthEvent>(&m.payload)
                        {
                            inbox.health.push((at, e));
                        }
                    }
                    else => break,
                }
            }
        }
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut prices = BTreeMap::new();
    let mut changes = plan.changes.iter().peekable();
    let mut sent = Vec::new();
    let mut fault_errors = Vec::new();
    let mut acks = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut i: u64 = 0;
    loop {
        // Open loop: request i goes out at i·interval, late or not.
        let due = Some(interval * i as u32).filter(|d| *d < plan.run);
        let next_change = changes.peek().map(|c| c.at);
        if let Some(at) = next_change.filter(|at| due.is_none_or(|d| *at <= d)) {
            tokio::time::sleep_until((start + at).into()).await;
            if let Some(c) = changes.next()
                && let Err(e) = sim.set_faults(c.provider, c.faults.clone())
            {
                fault_errors.push(format!("{} at {:?}: {e}", c.provider, c.at));
            }
            continue;
        }
        let Some(due) = due else { break };
        tokio::time::sleep_until((start + due).into()).await;
        let mut r = crate::cli::demo::request(i, &mut prices);
        r.request_id = format!("scn-{seed}-{i}");
        r.deadline_ms = plan.deadlines_ms.map(|(lo, hi)| rng.random_range(lo..=hi));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", r.request_id.as_str());
        let at = start.elapsed();
        let ack = js
            .publish_with_headers(
                names.request(r.kind),
                headers,
                serde_json::to_vec(&r)?.into(),
            )
            .await?;
        // Acks are awaited off the schedule: a slow ack must not delay the next request.
        acks.push(tokio::spawn(async move { ack.await.map(drop) }));
        sent.push(Sent {
            id: r.request_id,
            at,
            deadline_ms: r.deadline_ms,
        });
        i += 1;
    }
    for a in acks {
        a.await??;
    }
    let drained_by = Instant::now() + drain_limit(plan);
    loop {
        let answered = inbox.lock().results.len();
        if answered >= sent.len() || Instant::now() >= drained_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.abort();
    let inbox = std::mem::take(&mut *inbox.lock());
    Ok(Recording {
        sent,
        results: inbox.results,
        health: inbox.health,
        modes: inbox.modes,
        t0,
        fault_errors,
        duplicates: inbox.duplicates,
    })
}
