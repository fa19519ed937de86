//! `ai_signals`: each answered request's advice, written when its result is stored, joined
//! later with the trader's execution report and the outcomes over each horizon.

use async_nats::jetstream::kv;

use crate::contract::{Action, AnalysisResult, SignalRecord, Source};

use super::kv_record::{Decided, Decision, KvError, KvRecord, Versioned};

/// The signals bucket.
#[derive(Clone)]
pub struct Signals {
    records: KvRecord<SignalRecord>,
}

/// The advice in `result`, as a fresh signal record (`None`: nothing was answered).
pub fn signal_of(result: &AnalysisResult) -> Option<SignalRecord> {
    if result.source == Source::None {
        return None;
    }
    let (action, confidence) = match &result.signal {
        Some(s) => (Some(s.action), Some(s.confidence)),
        // Other kinds may still carry advice in their analysis object.
        None => advice_in(result.analysis.as_ref()),
    };
    Some(SignalRecord {
        request_id: result.request_id.clone(),
        kind: result.kind,
        symbol: result.symbol.clone(),
        provider: result.provider.clone(),
        model: result.model.clone(),
        source: result.source,
        action,
        confidence,
        created_at: result.completed_at,
        execution: None,
        outcomes: Vec::new(),
        tenant: result.tenant.clone(),
    })
}

/// `action` (buy/sell/hold) and `confidence` (0..=1) of a free-form analysis, when it has them.
fn advice_in(
    analysis: Option<&serde_json::Map<String, serde_json::Value>>,
) -> (Option<Action>, Option<f64>) {
    let Some(a) = analysis else {
        return (None, None);
    };
    let action = a
        .get("action")
        .and_then(|v| serde_json::from_value::<Action>(v.clone()).ok());
    let confidence = a
        .get("confidence")
        .and_then(|v| v.as_f64())
        .filter(|c| (0.0..=1.0).contains(c));
    (action, action.and(confidence))
}

impl Signals {
    /// Over bucket `kv`.
    pub fn new(kv: kv::Store) -> Self {
        Signals {
            records: KvRecord::new(kv, "signal record"),
        }
    }

    /// Stores the signal of a stored result, unless it is there already (a replay, or a
    /// redelivery after a crash between storing the result and this).
    pub async fn record(&self, result: &AnalysisResult) -> Result<(), KvError> {
        if let Some(signal) = signal_of(result) {
            self.records.write(&result.record_key(), &signal, 0).await?;
        }
        Ok(())
    }

    /// The signal stored under `key` (a [`scoped_request_key`](crate::contract::scoped_request_key)).
    pub async fn get(&self, request_id: &str) -> Result<Option<Versioned<SignalRecord>>, KvError> {
        self.records.get(request_id).await
    }

    /// Changes the signal of `request_id` with compare-and-set (see [`KvRecord::modify`]).
    pub async fn modify<R>(
        &self,
        request_id: &str,
        decide: impl FnMut(Option<SignalRecord>) -> Decision<SignalRecord, R>,
    ) -> Result<Decided<SignalRecord, R>, KvError> {
        self.records.modify(request_id, decide).await
    }
}
