//! Feedback ingestion against a real nats-server, with workers in this process over fake
//! providers (which always advise `buy` with confidence 0.8): reports join their signal,
//! each outcome counts once fleet-wide whatever is re-published, bad reports are
//! dead-lettered naming the field, and feedback for an unknown request waits for it, then is
//! dead-lettered `unknown_request`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use ai_failover::contract::{
    Action, DeadLetter, DeadLetterClass, Kind, Names, QualityRecord, QualitySummaryReply,
    SignalRecord, Source,
};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use common::control::call;
use common::eventually;
use common::nats::NatsServer;
use common::workers::{ask, ask_with, signal, start_worker};
use futures::StreamExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
}

impl Bus {
    async fn new(url: &str) -> Self {
        let client = async_nats::connect(url).await.unwrap();
        Bus {
            js: jetstream::new(client.clone()),
            client,
            names: Names::default(),
        }
    }

    /// Publishes a report to `<prefix>.feedback.<kind_token>` and waits for the stream's ack.
    async fn send(&self, kind_token: &str, body: &[u8], msg_id: Option<&str>) {
        let mut headers = HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let subject = format!("ai.feedback.{kind_token}");
        self.js
            .publish_with_headers(subject, headers, body.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn outcome(&self, id: &str, horizon_s: u64, ret: f64, with_msg_id: bool) {
        let body = json!({"request_id": id, "type": "outcome", "at": "2026-11-27T15:00:00Z",
            "outcome": {"horizon_s": horizon_s, "return": ret}});
        let msg_id = format!("{id}:outcome:{horizon_s}");
        let msg_id = with_msg_id.then_some(msg_id.as_str());
        self.send("signal", body.to_string().as_bytes(), msg_id)
            .await;
    }

    async fn kv(&self, bucket: String) -> kv::Store {
        self.js.get_key_value(bucket).await.unwrap()
    }

    async fn signal(&self, id: &str) -> Option<SignalRecord> {
        let entry = self
            .kv(self.names.signals_bucket())
            .await
            .get(id)
            .await
            .unwrap()?;
        Some(serde_json::from_slice(&entry).unwrap())
    }

    async fn quality(&self) -> Vec<QualityRecord> {
        let reply: QualitySummaryReply =
            call(&self.client, &self.names, "quality-summary", json!({})).await;
        reply.records
    }

    /// Waits until both learning consumers have nothing pending or unacknowledged: every
    /// report, and every outcome it logged, has been handled.
    async fn settle(&self) {
        for (stream, consumer) in [("AI_FEEDBACK", "feedback"), ("AI_QUALITY_LOG", "quality")] {
            let js = self.js.clone();
            eventually(WAIT, "the learning consumers to settle", async || {
                let mut c: jetstream::consumer::PullConsumer = js
                    .get_stream(stream)
                    .await
                    .unwrap()
                    .get_consumer(consumer)
                    .await
                    .unwrap();
                let info = c.info().await.unwrap();
                info.num_pending == 0 && info.num_ack_pending == 0
            })
            .await;
        }
    }

    /// The dead letters about feedback, as they are stored.
    async fn feedback_dead_letters(&self) -> Vec<DeadLetter> {
        common::fleet::dead_letters(&self.js)
            .await
            .into_iter()
            .filter(|d| d.kind == "feedback")
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_join_their_signal_and_count_exactly_once() {
    let server = NatsServer::start();
    let _w = start_worker(&server.url(), "ai", "w1").await;
    let bus = Bus::new(&server.url()).await;
    let result = ask(&bus.client, &bus.names, "AAPL").await;
    let id = result.request_id.clone();

    // The signal store has the advice as soon as the result is out.
    let s = bus
        .signal(&id)
        .await
        .expect("signal stored with the result");
    assert_eq!(s.kind, Kind::Signal);
    assert_eq!(s.symbol.as_deref(), Some("AAPL"));
    assert_eq!(s.provider.as_deref(), Some("primary"));
    assert_eq!(s.model.as_deref(), Some("primary-m1"));
    assert_eq!(
        (s.source, s.action, s.confidence),
        (Source::Provider, Some(Action::Buy), Some(0.8))
    );
    assert!(s.execution.is_none() && s.outcomes.is_empty());

    let execution = json!({"request_id": id, "type": "execution", "at": "2026-11-27T14:00:00Z",
        "execution": {"executed": true, "side": "buy", "quantity": 10, "price": 189.3, "reason": null}});
    bus.send(
        "signal",
        execution.to_string().as_bytes(),
        Some(&format!("{id}:execution")),
    )
    .await;
    // +1.2 % over an hour: the buy was right. Published three times: twice with its
    // Nats-Msg-Id (the stream drops the second), once without (the signal store knows it).
    for with_id in [true, true, false] {
        bus.outcome(&id, 3600, 0.012, with_id).await;
    }
    // -2 % over a minute: wrong.
    bus.outcome(&id, 60, -0.02, true).await;

    let s = eventually(WAIT, "both outcomes joined", async || {
        bus.signal(&id).await.filter(|s| s.outcomes.len() == 2)
    })
    .await;
    bus.settle().await;
    let s2 = bus.signal(&id).await.unwrap();
    assert_eq!(s2, s, "nothing changed after the duplicates were handled");
    let e = s.execution.expect("execution joined");
    assert!(e.execution.executed && e.execution.price == Some(189.3));
    let hits: Vec<(u64, Option<bool>)> = s.outcomes.iter().map(|o| (o.horizon_s, o.hit)).collect();
    assert!(
        hits.contains(&(3600, Some(true))) && hits.contains(&(60, Some(false))),
        "{hits:?}"
    );

    let records = bus.quality().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let q = &records[0];
    assert_eq!(q.provider.as_deref(), Some("primary"));
    assert_eq!(
        (q.kind, q.source, q.labelled),
        (Kind::Signal, Source::Provider, 2)
    );
    assert!(
        (q.n - 2.0).abs() < 1e-3 && (q.hits - 1.0).abs() < 1e-3,
        "{q:?}"
    );
    assert!((q.hit_rate - 0.5).abs() < 1e-3);
    // Signed return: +1.2 % and -2 % for a buy.
    assert!((q.mean_signed_return - (-0.004)).abs() < 1e-4, "{q:?}");
    // Confidence 0.8: (0.8 - 1)² and (0.8 - 0)².
    assert!((q.brier - (0.04 + 0.64) / 2.0).abs() < 1e-3, "{q:?}");
    let risk: QualitySummaryReply = call(
        &bus.client,
        &bus.names,
        "quality-summary",
        json!({"kind": "risk"}),
    )
    .await;
    assert!(risk.records.is_empty());
    let kv = bus.kv(bus.names.quality_bucket()).await;
    let key = "primary.primary-m1.signal";
    assert!(kv.get(key).await.unwrap().is_some());

    // A record deleted, or overwritten with garbage, is folded again from the whole log.
    let labelled = async |n: u64| {
        eventually(WAIT, "the record rebuilt from the log", async || {
            bus.quality().await.first().is_some_and(|q| q.labelled == n)
        })
        .await
    };
    kv.delete(key).await.unwrap();
    bus.outcome(&id, 86_400, 0.03, true).await;
    labelled(3).await;
    kv.put(key, "not a record".into()).await.unwrap();
    bus.outcome(&id, 604_800, 0.03, true).await;
    labelled(4).await;
    let q = &bus.quality().await[0];
    assert!((q.hits - 3.0).abs() < 1e-3, "{q:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_count_each_outcome_once_under_duplicates() {
    let server = NatsServer::start();
    let _w1 = start_worker(&server.url(), "ai", "w1").await;
    let _w2 = start_worker(&server.url(), "ai", "w2").await;
    let bus = Bus::new(&server.url()).await;
    let asks = (0..30).map(|i| ask(&bus.client, &bus.names, ["AAPL", "MSFT", "NVDA"][i % 3]));
    let ids: Vec<String> = futures::future::join_all(asks)
        .await
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    // Three horizons per request, each sent three times (once with its Nats-Msg-Id), all at
    // once so that both workers race on the same signals and the same quality record.
    let sends = ids.iter().flat_map(|id| {
        [(60, 0.01), (600, -0.01), (3600, 0.0)]
            .into_iter()
            .flat_map(move |(h, r)| [(id, h, r, true), (id, h, r, false), (id, h, r, false)])
    });
    futures::future::join_all(sends.map(|(id, h, r, with_id)| bus.outcome(id, h, r, with_id)))
        .await;
    bus.settle().await;
    let records = bus.quality().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let q = &records[0];
    assert_eq!(
        q.labelled, 90,
        "30 requests × 3 horizons, each counted once: {q:?}"
    );
    // A buy is right only when the price rose by more than the band: one horizon in three.
    assert!((q.hits - 30.0).abs() < 0.01, "{q:?}");
    for id in &ids {
        assert_eq!(bus.signal(id).await.unwrap().outcomes.len(), 3, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feedback_is_dead_lettered_naming_the_field() {
    let server = NatsServer::start();
    let _w = start_worker(&server.url(), "ai", "w1").await;
    let bus = Bus::new(&server.url()).await;
    let result = ask(&bus.client, &bus.names, "AAPL").await;
    let id = result.request_id.as_str();
    let at = "2026-11-27T14:00:00Z";
    let cases: Vec<(&str, Vec<u8>, DeadLetterClass, &str)> =
        vec![
        ("signal", b"{not json".to_vec(), DeadLetterClass::InvalidJson, "not JSON"),
        (
            "signal",
            json!({"request_id": id, "type": "outcome", "at": at, "outcome": {"horizon_s": 60}})
                .to_string()
                .into_bytes(),
            DeadLetterClass::InvalidRequest,
            "return",
        ),
        (
            "signal",
            json!({"request_id": id, "type": "execution", "at": at,
                "execution": {"executed": true, "side": "buy", "quantity": 3}})
            .to_string()
            .into_bytes(),
            DeadLetterClass::InvalidRequest,
            "execution.price",
        ),
        (
            "bogus",
            json!({"request_id": id, "type": "outcome", "at": at,
                "outcome": {"horizon_s": 60, "return": 0.01}})
            .to_string()
            .into_bytes(),
            DeadLetterClass::InvalidRequest,
            "`bogus` is not a kind",
        ),
        (
            "risk",
            json!({"request_id": id, "type": "outcome", "at": at,
                "outcome": {"horizon_s": 60, "return": 0.01}})
            .to_string()
            .into_bytes(),
            DeadLetterClass::InvalidRequest,
            "publish it to ai.feedback.signal",
        ),
    ];
    for (kind, body, _, _) in &cases {
        bus.send(kind, body, None).await;
    }
    let letters = eventually(WAIT, "five dead letters", async || {
        let l = bus.feedback_dead_letters().await;
        (l.len() >= cases.len()).then_some(l)
    })
    .await;
    assert_eq!(letters.len(), cases.len());
    for (kind, _, class, needle) in &cases {
        let subject = format!("ai.feedback.{kind}");
        let found = letters.iter().any(|d| {
            d.error.class == *class && d.error.message.contains(needle) && d.subject == subject
        });
        assert!(
            found,
            "no {class:?} letter naming `{needle}` on {subject}: {letters:#?}"
        );
    }
    // Nothing of it reached the signal or the quality records.
    bus.settle().await;
    assert!(bus.signal(id).await.unwrap().outcomes.is_empty());
    assert!(bus.quality().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_waits_for_its_result_then_gives_up_as_unknown_request() {
    let server = NatsServer::start();
    let _w = start_worker(&server.url(), "ai", "w1").await;
    let bus = Bus::new(&server.url()).await;
    let mut dead = bus
        .client
        .subscribe(bus.names.feedback_dead_letter())
        .await
        .unwrap();
    bus.client.flush().await.unwrap();

    // The trader's report overtakes the result: it is joined once the result is stored.
    let early = signal("MSFT");
    let never = "never-asked-request";
    let sent = Instant::now();
    bus.outcome(&early.request_id, 300, 0.02, true).await;
    bus.outcome(never, 300, 0.02, true).await;
    let result = ask_with(&bus.client, &bus.names, early).await;
    let joined = eventually(WAIT, "the early outcome joined", async || {
        bus.signal(&result.request_id)
            .await
            .filter(|s| s.outcomes.len() == 1)
    })
    .await;
    assert_eq!(joined.outcomes[0].hit, Some(true));

    // A signal lost in a crash between storing the result and recording it is rebuilt from
    // the stored result when its feedback comes.
    let lost = ask(&bus.client, &bus.names, "NVDA").await;
    let signals = bus.kv(bus.names.signals_bucket()).await;
    signals.purge(&lost.request_id).await.unwrap();
    assert!(bus.signal(&lost.request_id).await.is_none());
    bus.outcome(&lost.request_id, 60, 0.03, true).await;
    let rebuilt = eventually(WAIT, "the lost signal rebuilt and joined", async || {
        bus.signal(&lost.request_id)
            .await
            .filter(|s| s.outcomes.len() == 1)
    })
    .await;
    assert_eq!(rebuilt.provider, lost.provider);

    // The other waits for its request for 10 s, then is dead-lettered.
    let msg = tokio::time::timeout(Duration::from_secs(25), dead.next())
        .await
        .expect("an unknown_request letter")
        .unwrap();
    let waited = sent.elapsed();
    let letter: DeadLetter = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(letter.error.class, DeadLetterClass::UnknownRequest);
    assert_eq!(letter.request_id.as_deref(), Some(never));
    assert!(
        letter.error.message.contains(never),
        "{}",
        letter.error.message
    );
    assert!(
        waited >= Duration::from_secs(9),
        "dead-lettered after {waited:?}: feedback must wait ~10 s for its result"
    );
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &letter.payload_b64,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["request_id"], never, "the letter keeps the report");
    bus.settle().await;
    assert_eq!(bus.quality().await[0].labelled, 2);
}
