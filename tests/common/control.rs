//! Calling the control service as any client would, and the other small helpers several
//! test files share (an HTTP client, a test that owns its process's environment).

use std::io::Write;
use std::time::Duration;

use ai_failover::contract::Names;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a control call may take.
pub const CONTROL_WAIT: Duration = Duration::from_secs(10);

/// Sends `body` to `<prefix>.control.<endpoint>` and returns the raw reply.
pub async fn call_raw(
    client: &async_nats::Client,
    names: &Names,
    endpoint: &str,
    body: &str,
) -> async_nats::Message {
    let request = async_nats::Request::new()
        .payload(body.to_string().into())
        .timeout(Some(CONTROL_WAIT));
    client
        .send_request(names.control(endpoint), request)
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"))
}

/// A successful call, decoded.
pub async fn call<T: DeserializeOwned>(
    client: &async_nats::Client,
    names: &Names,
    endpoint: &str,
    body: Value,
) -> T {
    let msg = call_raw(client, names, endpoint, &body.to_string()).await;
    assert_eq!(
        error_code(&msg),
        None,
        "{endpoint} refused: {:?}",
        msg.payload
    );
    serde_json::from_slice(&msg.payload)
        .unwrap_or_else(|e| panic!("{endpoint} reply: {e}: {:?}", msg.payload))
}

/// The micro protocol's error code of a reply (`None`: it succeeded).
pub fn error_code(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.to_string())
}

/// An HTTP client with a bound on every request.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The body of a GET of `url`, as text.
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("a text body")
}

/// The body of a GET of `url`, as JSON.
pub async fn get_json(url: &str) -> Value {
    serde_json::from_str(&get_text(url).await)
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// The sum of a metric's samples on a worker's `/metrics` at `addr` (0 when it is not
/// reported yet).
pub async fn metric(addr: &str, name: &str) -> f64 {
    get_text(&format!("http://{addr}/metrics"))
        .await
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the worker whose HTTP port is `addr` consumes (`/readyz` says 200).
pub async fn wait_ready(addr: &str) {
    super::eventually(
        Duration::from_secs(20),
        "the worker to consume",
        async || {
            http()
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
}

/// Runs `test` on a fresh two-thread runtime after setting `envs` in this process's
/// environment: for a test that is alone in its process (nextest runs each test in its own),
/// setting them before any thread of its own exists.
pub fn with_env<F: Future<Output = ()>>(envs: &[(String, String)], test: impl FnOnce() -> F) {
    for (k, v) in envs {
        // SAFETY: called first thing in a test function, before it starts a thread; no other
        // test of the same file reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test());
}

/// Runs `ai-failover keys <args>` with `stdin` piped in.
pub fn keys_cli(config: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ai-failover"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
