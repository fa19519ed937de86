//! In-process providers for benchmarks: answer at once, or fail on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::contract::{Action, ErrorClass, Signal, Usage};
use crate::engine::Engine;
use crate::engine::clock::Instant;
use crate::engine::clock::SystemClock;
use crate::engine::ports::{LocalFleet, NullSink};
use crate::providers::{Answer, Completion, Provider, ProviderCall, ProviderError};

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

/// Answers instantly with a fixed signal, or fails with `server_error` while `failing`.
pub struct Instant0 {
    pub id: String,
    pub failing: AtomicBool,
    /// When the last call started / the last failure was returned.
    pub last_call: Mutex<Option<Stamp>>,
    pub last_failure: Mutex<Option<Stamp>>,
}

impl Instant0 {
    /// A healthy instant provider.
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(Instant0 {
            id: id.into(),
            failing: AtomicBool::new(false),
            last_call: Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Provider for Instant0 {
    fn id(&self) -> &str {
        &self.id
    }
    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError> {
        *self.last_call.lock() = Some(Stamp::now());
        if self.failing.load(Ordering::Relaxed) {
            *self.last_failure.lock() = Some(Stamp::now());
            return Err(
                ProviderError::new(ErrorClass::ServerError, "bench failure").with_status(503)
            );
        }
        Ok(Completion {
            model: call.model.clone(),
            answer: Answer::Signal(Signal {
                action: Action::Buy,
                confidence: 0.7,
                rationale: "bench".into(),
                position_size: 0.3,
                horizon: "1d".into(),
            }),
            usage: Usage {
                input_tokens: 400,
                output_tokens: 60,
            },
            http_status: 200,
        })
    }
    async fn probe(&self, _model: &str, _timeout: Duration) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A config with keyless providers `ids` (priority in order) under `prefix` at `nats`.
pub fn config(nats: &str, prefix: &str, ids: &[&str], extra: &str) -> crate::config::Config {
    let mut toml = format!(
        "[nats]\nurl = \"{nats}\"\nprefix = \"{prefix}\"\n[worker]\nhttp_listen = \"\"\nmax_in_flight = 256\nmax_ack_pending = 5000\n{extra}\n"
    );
    for (i, id) in ids.iter().enumerate() {
        toml += &format!(
            "[[providers]]\nid = \"{id}\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\ntier = \"local\"\npriority = {}\n",
            i + 1
        );
    }
    crate::config::load_str(&toml).expect("bench config is valid")
}

/// An engine with no NATS over instant providers `a` (priority 1, failing every call when
/// `a_fails`) and `b`, and a breaker that never trips, so that with `a` failing every request
/// really fails over (a tripped breaker would skip `a` and measure nothing).
pub fn engine_a_then_b(a_fails: bool) -> (Engine, Arc<Instant0>, Arc<Instant0>) {
    let cfg = config(
        "nats://127.0.0.1:4222",
        "bench",
        &["a", "b"],
        "[engine]\nhedging = false\n[breaker]\nconsecutive_failures = 1000000000\nfailure_rate = 1.0\nmin_calls = 1000000000\nwindow = 1000000000\n",
    );
    let (a, b) = (Instant0::new("a"), Instant0::new("b"));
    a.failing.store(a_fails, Ordering::Relaxed);
    let providers: Vec<Arc<dyn Provider>> = vec![a.clone(), b.clone()];
    let engine = Engine::new(
        Arc::new(cfg),
        providers,
        Arc::new(SystemClock),
        Arc::new(NullSink),
        Arc::new(LocalFleet),
        "bench",
    );
    (engine, a, b)
}
