//! Assembling the result: mode risk and suspension.

use crate::contract::{Action, AnalysisRequest, AnalysisResult, ErrorInfo, Kind, Source, Status};
use crate::engine::clock::Instant;
use crate::engine::modes;
use crate::providers::Answer;

use super::{Answered, Engine, Trace};

impl Engine {
    pub(super) fn finish(
        &self,
        request: &AnalysisRequest,
        started: Instant,
        trace: Trace,
        answered: Option<Answered>,
        status: Status,
        error: Option<ErrorInfo>,
    ) -> Box<AnalysisResult> {
        let mode = self.mode();
        let risk = modes::risk(mode, &self.cfg.modes);
        let (mut signal, mut analysis, source, provider, model) = match answered {
            Some(a) => {
                let (s, an) = match a.answer {
                    Answer::Signal(s) => (Some(s), None),
                    Answer::Analysis(m) => (None, Some(m)),
                };
                (s, an, a.source, a.provider, a.model)
            }
            None => (None, None, Source::None, None, None),
        };
        if let Some(s) = signal.as_mut() {
            s.position_size = (s.position_size * risk.position_multiplier).clamp(0.0, 1.0);
        }
        if risk.trading_suspended && request.kind == Kind::Signal {
            signal = Some(crate::contract::Signal {
                action: Action::Hold,
                confidence: signal.as_ref().map_or(0.0, |s| s.confidence),
                rationale: "trading suspended: holding".into(),
                position_size: 0.0,
                horizon: signal
                    .as_ref()
                    .map_or("intraday".into(), |s| s.horizon.clone()),
            });
            analysis = None;
        }
        let result = AnalysisResult {
            request_id: request.request_id.clone(),
            kind: request.kind,
            symbol: request.symbol.clone(),
            status,
            source,
            provider,
            model,
            mode,
            signal,
            analysis,
            risk,
            attempts: trace.attempts,
            latency_ms: self.clock.now().duration_since(started).as_millis() as u64,
            usage: trace.usage,
            cost_usd: trace.cost,
            error: if status == Status::Ok { None } else { error },
            worker_id: self.worker_id.clone(),
            completed_at: self.clock.utc(),
            tenant: None,
        };
        Box::new(result)
    }
}
