//! A real `nats-server -js` on a free loopback port with a temporary store directory.
//!
//! It can be killed and restarted with its data kept, and is killed on drop, so a panicking
//! test never leaks a server. The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH`
//! (`scripts/install-nats.sh` installs a pinned one).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) test server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    starts: u32,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!("nats-server not found: run `scripts/install-nats.sh` and put it on PATH, or set NATS_SERVER_BIN")
    })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

impl NatsServer {
    /// Starts a fresh JetStream server and waits until it accepts clients.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Like [`start`](Self::start) with extra command-line arguments.
    pub fn start_with(extra_args: Vec<String>) -> Self {
        Self::start_with_env(extra_args, Vec::new())
    }

    /// Like [`start_with`](Self::start_with), with variables in the server's environment
    /// (a configuration file's `$VAR` references).
    pub fn start_with_env(extra_args: Vec<String>, envs: Vec<(String, String)>) -> Self {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().expect("temp store dir"),
            extra_args,
            envs,
            starts: 0,
        };
        // The port was free when picked, but until the server binds it any test's outgoing
        // connection may take it as its own ephemeral port: then pick another.
        for _ in 0..5 {
            match server.try_launch() {
                Ok(()) => return server,
                Err(log) if log.contains("address already in use") => {
                    server.port = free_port();
                }
                Err(log) => panic!("nats-server exited before it was ready:\n{log}"),
            }
        }
        panic!("nats-server found no free port in five tries");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.store
            .path()
            .join(format!("server-{}.log", self.starts))
    }

    /// Starts the server and waits until it is ready; its log when it exits first.
    fn try_launch(&mut self) -> Result<(), String> {
        self.spawn();
        let log = self.log_path();
        self.wait_ready(&log)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.log_path();
        let mut cmd = Command::new(binary());
        cmd.args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--store_dir")
            .arg(self.store.path().join("js"))
            .arg("--log")
            .arg(&log)
            .args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn nats-server");
        self.child = Some(child);
    }

    /// Waits for the server's own "Server is ready" line: it is printed once JetStream has
    /// recovered its store and the client port listens.
    fn wait_ready(&mut self, log: &PathBuf) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(f) = std::fs::File::open(log)
                && BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .any(|l| l.contains("Server is ready"))
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("exit status {status}\n{text}"));
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready after 20 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            // Polling a log file: there is no event to await from another process.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server abruptly (SIGKILL), like a crash. The store is kept.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM lets it flush). The store is kept.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same store (its clients reconnect
    /// to that port). Should another process have taken the port meanwhile (any outgoing
    /// connection may get it as its ephemeral port), waits for it to be released.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_launch() {
                Ok(()) => return,
                Err(log) if log.contains("address already in use") && Instant::now() < deadline => {
                    // The holder is another process: nothing to await but its release.
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("nats-server did not restart:\n{log}"),
            }
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node JetStream cluster on loopback ports, each node killable and restartable.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three clustered nodes and waits until each is ready (JetStream meta leader
    /// election may still be under way: clients retry their first JetStream calls). If one
    /// of the six ports was taken before its node bound it, starts over on fresh ports.
    pub fn start() -> Self {
        for _ in 0..5 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("cluster node exited before it was ready:\n{log}"),
            }
        }
        panic!("the cluster found no six free ports in five tries");
    }

    fn try_start() -> Result<Self, String> {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        let mut logs = Vec::new();
        // Start all three before waiting: a node is only "ready" once it sees its peers.
        for i in 0..3 {
            let mut node = NatsServer {
                child: None,
                port: client_ports[i],
                store: tempfile::tempdir().expect("temp store dir"),
                extra_args: vec![
                    "--server_name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "ai-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                ],
                envs: Vec::new(),
                starts: 0,
            };
            node.spawn();
            logs.push(node.log_path());
            nodes.push(node);
        }
        for (node, log) in nodes.iter_mut().zip(logs) {
            // Dropping `nodes` on an error kills the ones that did start.
            node.wait_ready(&log)?;
        }
        Ok(NatsCluster { nodes })
    }

    /// A comma-separated seed list of every node.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }
}
