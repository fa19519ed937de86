//! Local processes for the demo and the benchmarks: a nats-server started on a free port, and
//! child processes that never outlive the command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Child processes that are stopped (SIGTERM, then SIGKILL after 5 s) when this is dropped,
/// even on an error path.
pub struct Children(pub Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // A process already gone (stopped and reaped elsewhere) needs no signal.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for (_, c) in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn nats_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
        .context("nats-server not found: run scripts/install-nats.sh (scripts/demo.sh does) or pass --nats-url")
}

/// Starts `nats-server -js` on a free loopback port with its store in `dir`, registers it in
/// `children`, and returns its URL once it is ready. A port taken between choosing it and
/// binding it (another process on this machine) is replaced by another, a few times.
pub async fn start_nats(dir: &Path, children: &mut Children) -> anyhow::Result<String> {
    for _ in 0..5 {
        let port = free_port()?;
        let log = dir.join(format!("nats-{port}.log"));
        let child = Command::new(nats_binary()?)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--store_dir",
            ])
            .arg(dir.join("jetstream"))
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nats-server")?;
        children.0.push(("nats-server".into(), child));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return Ok(format!("nats://127.0.0.1:{port}"));
            }
            let exited = children
                .0
                .last_mut()
                .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
            if exited && text.contains("address already in use") {
                break; // try another port
            }
            anyhow::ensure!(
                !exited && Instant::now() < deadline,
                "nats-server did not start; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    anyhow::bail!("nats-server found every port it tried taken")
}
