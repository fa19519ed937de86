//! Configurations and an engine for the benchmarks, over the library's in-process fake
//! providers.

use std::sync::Arc;

use crate::contract::ErrorClass;
use crate::engine::Engine;
use crate::engine::clock::SystemClock;
use crate::engine::ports::{LocalFleet, NullSink};
use crate::providers::Provider;
use crate::providers::fake::Fake;

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
pub fn engine_a_then_b(a_fails: bool) -> (Engine, Arc<Fake>, Arc<Fake>) {
    let cfg = config(
        "nats://127.0.0.1:4222",
        "bench",
        &["a", "b"],
        "[engine]\nhedging = false\n[breaker]\nconsecutive_failures = 1000000000\nfailure_rate = 1.0\nmin_calls = 1000000000\nwindow = 1000000000\n",
    );
    let (a, b) = (Fake::instant("a"), Fake::instant("b"));
    if a_fails {
        a.fail_with(Some(ErrorClass::ServerError));
    }
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
