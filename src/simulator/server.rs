//! Starting the simulator and the handle tests, the demo and benchmarks drive it with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use super::calls::{CallRecord, ProviderCalls};
use super::conn::{Conn, Gate, SimListener};
use super::control;
use super::routes::{Ctx, provider_router};
use super::state::Shared;
use super::urls::{base_url, dedicated_base_url, reachable};
use super::{Faults, Outage, SimConfig, SimError};

/// The provider simulator, run in-process on the current tokio runtime.
#[derive(Debug)]
pub struct Simulator;

type ServeTask = JoinHandle<std::io::Result<()>>;

fn spawn(listener: SimListener, router: Router, shared: &Shared) -> ServeTask {
    let stop = shared.shutdown.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<Conn>(),
        )
        .with_graceful_shutdown(stop)
        .await
    })
}

impl Simulator {
    /// Binds every listener, then serves in background tasks until
    /// [`SimHandle::shutdown`] (or the handle is dropped).
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate().map_err(SimError::InvalidConfig)?;
        let bind = |addr: SocketAddr, e: std::io::Error| SimError::Bind { addr, source: e };
        let shared_listener = SimListener::bind(config.listen, None)
            .await
            .map_err(|e| bind(config.listen, e))?;
        let addr = shared_listener.local_addr_now();
        // Dedicated ports are bound before any state exists so their real ports are known.
        let mut dedicated = BTreeMap::new();
        for p in &config.providers {
            if let Some(a) = p.dedicated_listen {
                let l = SimListener::bind(a, None).await.map_err(|e| bind(a, e))?;
                dedicated.insert(p.name.clone(), l);
            }
        }
        let mut shared = Shared::new(config.seed);
        for p in config.providers {
            let daddr = dedicated.get(&p.name).map(SimListener::local_addr_now);
            shared.add_provider(p.name, p.api, p.expected_key, p.faults, daddr);
        }
        let shared = Arc::new(shared);

        let mut router = Router::new().nest("/_sim", control::router(shared.clone(), addr));
        let mut tasks = Vec::new();
        for (name, provider) in &shared.providers {
            let ctx = Ctx {
                shared: shared.clone(),
                provider: provider.clone(),
            };
            router = router.nest(&format!("/{name}"), provider_router(ctx.clone()));
            if let Some(listener) = dedicated.remove(name) {
                let gate = Gate {
                    provider: provider.clone(),
                    changed: shared.subscribe(),
                };
                tasks.push(spawn(
                    listener.with_gate(gate),
                    provider_router(ctx),
                    &shared,
                ));
            }
        }
        tasks.push(spawn(shared_listener, router, &shared));
        tracing::info!(%addr, providers = shared.providers.len(), "provider simulator listening");
        Ok(SimHandle {
            shared,
            addr,
            tasks,
        })
    }
}

/// A running simulator. Dropping it stops the servers too; [`SimHandle::shutdown`] also
/// waits for them.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<ServeTask>,
}

impl SimHandle {
    /// The shared listener's address (real port, even when configured as 0).
    pub fn addr(&self) -> SocketAddr {
        reachable(self.addr)
    }

    /// The configured provider names, sorted.
    pub fn providers(&self) -> Vec<String> {
        self.shared.providers.keys().cloned().collect()
    }

    /// The base URL of `name` on the shared listener, in its vendor SDK's form:
    /// `http://host:port/<name>/v1` (OpenAI) or `http://host:port/<name>`.
    pub fn base_url(&self, name: &str) -> Option<String> {
        let p = self.shared.providers.get(name)?;
        Some(base_url(p.api, self.addr, Some(name)))
    }

    /// The address of `name`'s dedicated listener, if it has one.
    pub fn dedicated_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared.providers.get(name)?.dedicated.map(reachable)
    }

    /// The base URL of `name`'s dedicated listener (unprefixed paths).
    pub fn dedicated_base_url(&self, name: &str) -> Option<String> {
        let p = self.shared.providers.get(name)?;
        Some(dedicated_base_url(p.api, p.dedicated?))
    }

    /// The control API's root, `http://host:port/_sim`.
    pub fn control_url(&self) -> String {
        format!("http://{}/_sim", self.addr())
    }

    /// Replaces `name`'s faults; an outage window starts counting now.
    pub fn set_faults(&self, name: &str, faults: Faults) -> Result<(), SimError> {
        self.shared.set_faults(name, faults)
    }

    /// Removes every fault of `name`.
    pub fn clear_faults(&self, name: &str) -> Result<(), SimError> {
        self.shared.set_faults(name, Faults::default())
    }

    /// Starts an outage of `name` now, for `duration` or until cleared (`None`), keeping its
    /// other faults.
    pub fn start_outage(&self, name: &str, duration: Option<Duration>) -> Result<(), SimError> {
        let outage = Outage {
            start_ms: 0,
            duration_ms: duration.map(|d| d.as_millis() as u64),
        };
        self.shared.start_outage(name, outage)
    }

    /// `name`'s current faults.
    pub fn faults(&self, name: &str) -> Option<Faults> {
        self.shared.faults(name).ok()
    }

    /// Per-provider call counts, including calls per request id.
    pub fn calls(&self) -> BTreeMap<String, ProviderCalls> {
        self.shared.calls()
    }

    /// Every call so far, oldest first.
    pub fn log(&self) -> Vec<CallRecord> {
        self.shared.log()
    }

    /// Zeroes call counts and empties the log.
    pub fn reset_calls(&self) {
        self.shared.reset_calls();
    }

    /// Stops accepting, ends hung and dripping calls, and waits for the servers to stop.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "simulator server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "simulator server task failed"),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
