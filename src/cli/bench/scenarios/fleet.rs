//! The fleet a scenario runs against: a nats-server, the provider simulator and N worker
//! processes with the default configuration (only addresses changed), all torn down when the
//! [`Fleet`] is dropped, on every path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::super::super::local::{Children, free_port, start_nats};
use super::catalog::{PROVIDERS, baseline};
use crate::config::Api;
use crate::simulator::{SimConfig, SimHandle, SimProvider, Simulator};

/// The key every simulated provider expects (not a secret: a local simulator's).
const KEY: &str = "scenario-key-not-a-secret";

/// `RUST_LOG` of the worker processes (default `warn`); when set, each run's directory with
/// the workers' logs is kept and its path printed.
pub const WORKER_LOG_ENV: &str = "AI_FAILOVER_SCENARIO_WORKER_LOG";

/// A running fleet.
pub struct Fleet {
    pub nats_url: String,
    pub sim: SimHandle,
    /// Each worker's `http_listen` address (`/readyz`, `/metrics`).
    pub worker_http: Vec<String>,
    /// Worker log files, named in errors.
    pub logs: Vec<PathBuf>,
    children: Children,
    /// The `ai-failover` executable, the workers' configuration file and overrides.
    exe: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The worker configuration: the defaults, plus the three simulated providers with the 5 s
/// timeout a latency-sensitive team sets.
pub fn worker_config(nats_url: &str, sim: &SimHandle, key_file: &Path) -> String {
    let mut toml = format!("[nats]\nurl = \"{nats_url}\"\n\n");
    for (i, (id, api, model)) in PROVIDERS.iter().enumerate() {
        let api = match api {
            Api::Openai => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        };
        // The dedicated port: only there can the `refused` scenario close a real port.
        let url = sim
            .dedicated_base_url(id)
            .expect("every simulated provider has a dedicated port");
        toml += &format!(
            "[[providers]]\nid = \"{id}\"\napi = \"{api}\"\nbase_url = \"{url}\"\n\
             api_key_file = \"{}\"\nmodels = [\"{model}\"]\npriority = {}\ntimeout_ms = 5000\n\
             cost = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}\n\n",
            key_file.display(),
            i + 1
        );
    }
    toml
}

impl Fleet {
    /// Starts nats-server, the simulator and `workers` worker processes (`exe worker …`), and
    /// waits until every worker is consuming. A part that cannot start is named in the error;
    /// whatever did start is stopped again.
    pub async fn start(exe: &Path, workers: usize, seed: u64) -> anyhow::Result<Fleet> {
        Self::start_with(exe, workers, seed, Vec::new()).await
    }

    /// [`start`](Self::start) with configuration overrides for the workers
    /// (`AI_FAILOVER_<SECTION>__<KEY>` variables).
    pub async fn start_with(
        exe: &Path,
        workers: usize,
        seed: u64,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Fleet> {
        let dir = tempfile::Builder::new()
            .prefix("ai-failover-scenario")
            .tempdir()
            .context("create a temp dir")?;
        let mut children = Children(Vec::new());
        let nats_url = start_nats(dir.path(), &mut children)
            .await
            .context("cannot start nats-server")?;
        let mut sim_cfg = SimConfig::local();
        sim_cfg.seed = Some(seed);
        for (id, api, _) in PROVIDERS {
            sim_cfg = sim_cfg.provider(
                SimProvider::new(id, api)
                    .with_key(KEY)
                    .with_faults(baseline())
                    .with_dedicated(([127, 0, 0, 1], 0).into()),
            );
        }
        let sim = Simulator::start(sim_cfg)
            .await
            .context("cannot start the provider simulator")?;
        let key = dir.path().join("api-key");
        std::fs::write(&key, KEY)?;
        let config = dir.path().join("worker.toml");
        std::fs::write(&config, worker_config(&nats_url, &sim, &key))?;
        let mut fleet = Fleet {
            nats_url,
            sim,
            worker_http: Vec::new(),
            logs: Vec::new(),
            children,
            exe: exe.to_path_buf(),
            config,
            env,
            _dir: dir,
        };
        for n in 1..=workers {
            fleet.spawn_worker(n)?;
        }
        fleet.wait_ready(Duration::from_secs(60)).await?;
        Ok(fleet)
    }

    /// Starts worker `n` (1-based) on a fresh HTTP port, or starts it again.
    fn spawn_worker(&mut self, n: usize) -> anyhow::Result<()> {
        let http = format!("127.0.0.1:{}", free_port()?);
        let log_path = self._dir.path().join(format!("worker-{n}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = worker_command(&self.exe, &self.config, n, &http, log)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("cannot start worker {n} ({})", self.exe.display()))?;
        // Children: nats-server first, then the workers in order.
        let entry = (format!("worker {n}"), child);
        match self.children.0.get_mut(n) {
            Some(old) => *old = entry,
            None => self.children.0.push(entry),
        }
        match self.worker_http.get_mut(n - 1) {
            Some(old) => *old = http,
            None => self.worker_http.push(http),
        }
        match self.logs.get_mut(n - 1) {
            Some(old) => *old = log_path,
            None => self.logs.push(log_path),
        }
        Ok(())
    }

    /// The process ids of the workers, in order.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.children
            .0
            .iter()
            .skip(1)
            .map(|(_, c)| c.id())
            .collect()
    }

    /// What restarting a worker needs, owned: usable while the fleet is borrowed elsewhere.
    pub fn restarter(&self) -> Restarter {
        Restarter {
            exe: self.exe.clone(),
            config: self.config.clone(),
            worker_http: self.worker_http.clone(),
            logs: self.logs.clone(),
            env: self.env.clone(),
            pids: self.worker_pids(),
            children: Children(Vec::new()),
        }
    }

    /// Waits until every worker answers `/readyz` with 200; a worker that exits or never
    /// gets ready is named, with the end of its log. One whose HTTP port was taken between
    /// choosing and binding it (another process on this machine) is started again on another.
    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let client = http_client();
        let deadline = Instant::now() + within;
        for n in 0..self.worker_http.len() {
            let mut restarts = 0;
            loop {
                let ready = client
                    .get(format!("http://{}/readyz", self.worker_http[n]))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                let exited = self
                    .children
                    .0
                    .get_mut(n + 1)
                    .and_then(|(_, c)| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    let tail = log_tail(&self.logs[n]);
                    if tail.contains("worker.http_listen") && restarts < 3 {
                        restarts += 1;
                        self.spawn_worker(n + 1)?;
                        continue;
                    }
                    anyhow::bail!(
                        "worker {} exited ({status}) before it was ready; its log ends:\n{tail}",
                        n + 1
                    );
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "worker {} did not get ready within {within:?}; its log ends:\n{}",
                    n + 1,
                    log_tail(&self.logs[n])
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The sum over workers of a Prometheus counter's samples whose labels contain `labels`
    /// (e.g. `provider="openai"`); `None` when no worker reports it.
    pub async fn counter(&self, name: &str, labels: &str) -> Option<f64> {
        let client = http_client();
        let mut total = None;
        for addr in &self.worker_http {
            let Ok(resp) = client
                .get(format!("http://{addr}/metrics"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            else {
                continue;
            };
            let text = resp.text().await.unwrap_or_default();
            if let Some(n) = sum_samples(&text, name, labels) {
                *total.get_or_insert(0.0) += n;
            }
        }
        total
    }

    /// Stops the workers (SIGTERM, they drain), the simulator and nats-server.
    pub async fn stop(self) {
        let Fleet {
            sim,
            children,
            _dir,
            ..
        } = self;
        drop(children);
        sim.shutdown().await;
        if std::env::var_os(WORKER_LOG_ENV).is_some() {
            eprintln!("worker logs kept in {}", _dir.keep().display());
        }
    }
}

/// The command that runs worker `n` (1-based), its HTTP port on `http`, logging to `log`.
fn worker_command(exe: &Path, config: &Path, n: usize, http: &str, log: std::fs::File) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["worker", "--id", &format!("scenario-w{n}"), "--config"])
        .arg(config)
        .env("AI_FAILOVER_WORKER__HTTP_LISTEN", http)
        .env(
            "RUST_LOG",
            std::env::var(WORKER_LOG_ENV).unwrap_or("warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// Restarts workers of a running fleet (SIGTERM, wait, start again on the same port); the
/// processes it started are stopped when it is dropped.
pub struct Restarter {
    exe: PathBuf,
    config: PathBuf,
    worker_http: Vec<String>,
    logs: Vec<PathBuf>,
    env: Vec<(String, String)>,
    /// Each worker's current process id.
    pub pids: Vec<u32>,
    children: Children,
}

impl Restarter {
    /// Stops worker `n` (1-based) gracefully and starts it again; returns once the new one
    /// consumes.
    pub async fn restart(&mut self, n: usize) -> anyhow::Result<()> {
        let pid = self.pids[n - 1];
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        let gone = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < gone {
            // A process of ours may linger as a zombie until reaped: reap what we own.
            for (_, c) in &mut self.children.0 {
                let _ = c.try_wait();
            }
            if proc_state(pid).is_some_and(|s| s == 'Z') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.logs[n - 1])?;
        let child = worker_command(&self.exe, &self.config, n, &self.worker_http[n - 1], log)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("cannot restart worker {n}"))?;
        self.pids[n - 1] = child.id();
        self.children.0.push((format!("worker {n}"), child));
        let client = http_client();
        let ready_by = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("http://{}/readyz", self.worker_http[n - 1]))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < ready_by,
                "restarted worker {n} did not get ready; its log ends:\n{}",
                log_tail(&self.logs[n - 1])
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The resident memory of process `pid`, in MiB (`None` once it is gone).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The state letter of process `pid` (`R`, `S`, `Z`…), if it exists.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The last lines of a log file (or why it cannot be read).
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Sums the samples of counter `name` in a Prometheus text page whose label set contains
/// `labels`; `None` when there is none.
fn sum_samples(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let matches = series == name
                || (series.starts_with(name)
                    && series[name.len()..].starts_with('{')
                    && series.contains(labels));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples_only() {
        let page = "# TYPE x counter\nx{provider=\"openai\",what=\"a\"} 2\n\
                    x{provider=\"gemini\"} 5\nx{provider=\"openai\",what=\"b\"} 1.5\nxy 9\n";
        assert_eq!(sum_samples(page, "x", "provider=\"openai\""), Some(3.5));
        assert_eq!(sum_samples(page, "x", ""), Some(8.5));
        assert_eq!(sum_samples(page, "z", ""), None);
    }
}
