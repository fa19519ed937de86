//! Resident memory of a worker process holding many requests in flight.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::config::Api;
use crate::contract::{AnalysisRequest, Names};
use crate::simulator::{Faults, Latency, SimConfig, SimProvider, Simulator};

use super::super::local::Children;

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// (RSS, peak RSS) in MiB of a worker process while `in_flight` requests wait on a slow
/// (simulated, over HTTP) provider.
pub async fn rss_with_in_flight(
    nats: &str,
    dir: &Path,
    in_flight: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut sim_cfg = SimConfig::local();
    sim_cfg = sim_cfg.provider(SimProvider::new("slow", Api::Openai).with_faults(Faults {
        latency_ms: Some(Latency::Fixed(15_000)),
        ..Faults::default()
    }));
    let sim = Simulator::start(sim_cfg).await?;
    let config = dir.join("memory.toml");
    std::fs::write(
        &config,
        format!(
            "[nats]\nurl = \"{nats}\"\nprefix = \"bmem\"\n[worker]\nhttp_listen = \"\"\nmax_in_flight = {in_flight}\nmax_ack_pending = {}\nack_wait_ms = 60000\n\
             [engine]\nhedging = false\n[[providers]]\nid = \"slow\"\napi = \"openai\"\nbase_url = \"{}\"\nmodels = [\"m\"]\ntier = \"local\"\ntimeout_ms = 30000\n",
            in_flight * 2,
            sim.base_url("slow").expect("simulated")
        ),
    )?;
    let mut children = Children(Vec::new());
    let child = Command::new(std::env::current_exe()?)
        .args(["worker", "--id", "memory", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    children.0.push(("worker".into(), child));
    let client = async_nats::connect(nats).await?;
    let js = jetstream::new(client);
    let names = Names::new("bmem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream(names.requests_stream()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "memory worker did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..in_flight {
        let mut r = AnalysisRequest::signal("AAPL");
        r.request_id = format!("mem-{i}");
        r.deadline_ms = Some(60_000);
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", r.request_id.as_str());
        js.publish_with_headers(names.request(r.kind), h, serde_json::to_vec(&r)?.into())
            .await?
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.calls().get("slow").map_or(0, |c| c.total) < in_flight as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not take {in_flight} requests in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss = status_mib(pid, "VmRSS:").unwrap_or(f64::NAN);
    let hwm = status_mib(pid, "VmHWM:").unwrap_or(f64::NAN);
    drop(children);
    sim.shutdown().await;
    Ok((rss, hwm))
}
