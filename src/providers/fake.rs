//! An in-process provider that does what it is told, for the tests and the benchmarks: a
//! script of steps (answer after a delay, fail with a class, rate-limit, hang), then a
//! default step that can be switched at run time. It counts its calls, remembers the models
//! asked for, and stamps its last call and last failure (wall clock and thread CPU time, for
//! the failover benchmark).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::contract::{Action, ErrorClass, Signal, Usage};
use tokio::time::Instant;

use super::{Answer, Completion, Provider, ProviderCall, ProviderError};

/// What the fake does on one call.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answers a buy signal after this long.
    Ok(Duration),
    /// Fails with this class (HTTP 503) after this long.
    Fail(ErrorClass, Duration),
    /// Answers 429 with this `Retry-After`, at once.
    RateLimited(Duration),
    /// Never answers.
    Hang,
}

/// CPU time this thread has run so far: unlike a wall clock, it does not count the time the
/// VM or the OS kept the thread off the CPU.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// When something happened, by the wall clock and by the calling thread's CPU clock.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub wall: Instant,
    pub cpu: Duration,
}

impl Stamp {
    fn now() -> Self {
        Stamp {
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }
}

/// The answer every fake gives: a buy signal naming `provider`, with fixed usage (1,000
/// input and 100 output tokens) so that cost arithmetic can be checked.
pub fn completion(model: &str, provider: &str) -> Completion {
    Completion {
        model: model.to_string(),
        answer: Answer::Signal(Signal {
            action: Action::Buy,
            confidence: 0.8,
            rationale: format!("from {provider}"),
            position_size: 0.5,
            horizon: "1d".into(),
        }),
        usage: Usage {
            input_tokens: 1_000,
            output_tokens: 100,
        },
        http_status: 200,
    }
}

/// A scripted provider.
pub struct Fake {
    id: String,
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Step>,
    /// Probes pass whatever calls do (so that active checks add no failures of their own).
    probes_pass: AtomicBool,
    calls: AtomicUsize,
    models: Mutex<Vec<String>>,
    last_call: Mutex<Option<Stamp>>,
    last_failure: Mutex<Option<Stamp>>,
}

impl Fake {
    /// A fake doing `default` on every call.
    pub fn new(id: &str, default: Step) -> Arc<Self> {
        Arc::new(Fake {
            id: id.into(),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            probes_pass: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            models: Mutex::new(Vec::new()),
            last_call: Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }

    /// A fake answering at once.
    pub fn instant(id: &str) -> Arc<Self> {
        Fake::new(id, Step::Ok(Duration::ZERO))
    }

    /// The same fake doing `steps` first.
    pub fn then(self: &Arc<Self>, steps: &[Step]) -> Arc<Self> {
        self.script.lock().extend(steps.iter().cloned());
        self.clone()
    }

    /// The same fake whose probes always pass.
    pub fn probes_always_pass(self: &Arc<Self>) -> Arc<Self> {
        self.probes_pass.store(true, Ordering::Relaxed);
        self.clone()
    }

    /// From now on every call fails at once with `class` (`None`: answers at once).
    pub fn fail_with(&self, class: Option<ErrorClass>) {
        *self.default.lock() = match class {
            Some(c) => Step::Fail(c, Duration::ZERO),
            None => Step::Ok(Duration::ZERO),
        };
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The models asked for, in call order.
    pub fn models(&self) -> Vec<String> {
        self.models.lock().clone()
    }

    /// When the last call started.
    pub fn last_call(&self) -> Option<Stamp> {
        *self.last_call.lock()
    }

    /// When the last failure was returned.
    pub fn last_failure(&self) -> Option<Stamp> {
        *self.last_failure.lock()
    }

    /// Forgets the stamps.
    pub fn clear_stamps(&self) {
        *self.last_call.lock() = None;
        *self.last_failure.lock() = None;
    }
}

#[async_trait]
impl Provider for Fake {
    fn id(&self) -> &str {
        &self.id
    }

    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError> {
        *self.last_call.lock() = Some(Stamp::now());
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.models.lock().push(call.model.clone());
        let scripted = self.script.lock().pop_front();
        let step = scripted.unwrap_or_else(|| self.default.lock().clone());
        match step {
            Step::Ok(d) => {
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
                Ok(completion(&call.model, &self.id))
            }
            Step::Fail(class, d) => {
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
                *self.last_failure.lock() = Some(Stamp::now());
                Err(ProviderError::new(class, format!("{} failed", self.id)).with_status(503))
            }
            Step::RateLimited(retry) => {
                let mut e = ProviderError::new(ErrorClass::RateLimited, "slow down");
                e.retry_after = Some(retry);
                Err(e)
            }
            Step::Hang => std::future::pending().await,
        }
    }

    async fn probe(&self, _model: &str, _timeout: Duration) -> Result<(), ProviderError> {
        if self.probes_pass.load(Ordering::Relaxed) {
            return Ok(());
        }
        match &*self.default.lock() {
            Step::Ok(_) => Ok(()),
            _ => Err(ProviderError::new(ErrorClass::ServerError, "down")),
        }
    }
}
