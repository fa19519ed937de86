//! State shared by every handler, the control API and the [`super::SimHandle`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::answer::fnv1a;
use super::calls::{CallRecord, Ledger, ProviderCalls};
use super::plan::{FaultState, Plan};
use super::{Api, Faults, Outage, SimError};

/// One simulated provider at run time.
#[derive(Debug)]
pub(crate) struct ProviderState {
    pub name: String,
    pub api: Api,
    pub expected_key: Option<String>,
    /// The bound dedicated address (its real port, even when configured as 0).
    pub dedicated: Option<SocketAddr>,
    faults: Mutex<FaultState>,
    /// Models asked for so far, so model listings show what clients use.
    models_seen: Mutex<BTreeSet<String>>,
    /// Generation calls being answered right now (for `max_concurrent`).
    in_flight: std::sync::atomic::AtomicU32,
}

/// One generation call counted in [`ProviderState::admit`]'s limit until dropped.
pub(crate) struct Admitted<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Poisoning only follows a panic in a handler; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl ProviderState {
    /// Decides one call's fate.
    pub(crate) fn plan(&self) -> Plan {
        lock(&self.faults).plan(Instant::now())
    }

    /// Takes a place among the calls being answered; `None` when `limit` are already running
    /// (a vendor's concurrency limit: the call is answered 429 at once).
    pub(crate) fn admit(&self, limit: Option<u32>) -> Option<Admitted<'_>> {
        let now = self
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let admitted = Admitted(&self.in_flight);
        match limit {
            Some(max) if now > max => None, // dropping `admitted` gives the place back
            _ => Some(admitted),
        }
    }

    /// Whether connections should be refused right now.
    pub(crate) fn refusing(&self) -> bool {
        lock(&self.faults).faults.refuse_connections
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).faults.clone()
    }

    pub(crate) fn saw_model(&self, model: &str) {
        lock(&self.models_seen).insert(model.to_owned());
    }

    /// Vendor-typical model ids plus every model asked for.
    pub(crate) fn models(&self) -> Vec<String> {
        let defaults: &[&str] = match self.api {
            Api::Openai => &["gpt-4o", "gpt-4o-mini"],
            Api::Anthropic => &["claude-sonnet-4-5", "claude-haiku-4-5"],
            Api::Gemini => &["gemini-2.5-flash", "gemini-2.5-pro"],
        };
        let mut all: BTreeSet<String> = defaults.iter().map(|s| (*s).to_owned()).collect();
        all.extend(lock(&self.models_seen).iter().cloned());
        all.into_iter().collect()
    }
}

/// Everything the simulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub providers: BTreeMap<String, Arc<ProviderState>>,
    ledger: Mutex<Ledger>,
    seed: Option<u64>,
    /// Bumped on every fault change; dedicated listeners watch it to close or reopen.
    changed: watch::Sender<u64>,
    pub shutdown: CancellationToken,
}

impl Shared {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Shared {
            providers: BTreeMap::new(),
            ledger: Mutex::new(Ledger::default()),
            seed,
            changed: watch::Sender::new(0),
            shutdown: CancellationToken::new(),
        }
    }

    /// An RNG for `name`: the faults' seed, else one derived from the simulator's, else
    /// entropy.
    fn rng(&self, name: &str, faults: &Faults) -> SmallRng {
        match faults.seed.or(self.seed.map(|s| s ^ fnv1a(name))) {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        }
    }

    pub(crate) fn add_provider(
        &mut self,
        name: String,
        api: Api,
        expected_key: Option<String>,
        faults: Faults,
        dedicated: Option<SocketAddr>,
    ) {
        let rng = self.rng(&name, &faults);
        lock(&self.ledger)
            .calls
            .insert(name.clone(), ProviderCalls::default());
        let state = ProviderState {
            name: name.clone(),
            api,
            expected_key,
            dedicated,
            faults: Mutex::new(FaultState {
                faults,
                set_at: Instant::now(),
                rng,
            }),
            models_seen: Mutex::new(BTreeSet::new()),
            in_flight: std::sync::atomic::AtomicU32::new(0),
        };
        self.providers.insert(name, Arc::new(state));
    }

    fn provider(&self, name: &str) -> Result<&Arc<ProviderState>, SimError> {
        self.providers
            .get(name)
            .ok_or_else(|| SimError::UnknownProvider(name.to_owned()))
    }

    /// Replaces a provider's faults; outage windows restart from now.
    pub(crate) fn set_faults(&self, name: &str, faults: Faults) -> Result<(), SimError> {
        faults.validate().map_err(SimError::InvalidFaults)?;
        let p = self.provider(name)?;
        {
            let mut st = lock(&p.faults);
            // Reseed only when asked to, so clearing faults does not replay old draws.
            if faults.seed.is_some() {
                st.rng = self.rng(name, &faults);
            }
            st.faults = faults;
            st.set_at = Instant::now();
        }
        self.changed.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Adds an outage to the current faults, starting its clock now.
    pub(crate) fn start_outage(&self, name: &str, outage: Outage) -> Result<(), SimError> {
        let mut faults = self.faults(name)?;
        faults.outage = Some(outage);
        self.set_faults(name, faults)
    }

    pub(crate) fn faults(&self, name: &str) -> Result<Faults, SimError> {
        Ok(self.provider(name)?.faults())
    }

    /// A receiver that wakes on every fault change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn count(&self, provider: &str, probe: bool, request_id: Option<&str>) {
        lock(&self.ledger).count(provider, probe, request_id);
    }

    pub(crate) fn record(&self, r: CallRecord) {
        lock(&self.ledger).record(r);
    }

    pub(crate) fn calls(&self) -> BTreeMap<String, ProviderCalls> {
        lock(&self.ledger).calls.clone()
    }

    pub(crate) fn log(&self) -> Vec<CallRecord> {
        lock(&self.ledger).log.clone()
    }

    pub(crate) fn reset_calls(&self) {
        lock(&self.ledger).reset();
    }
}
