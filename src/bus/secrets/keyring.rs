//! The keys a worker calls with: each provider's slot holds the key from `ai_secrets` when one
//! is stored there (it takes precedence), else the one from `api_key_env` / `api_key_file`.
//! The worker reads the bucket before taking requests and then follows it, so a key set with
//! `keys.set` is used from the next call on, without a restart. A stored key this worker
//! cannot open (no master key, another master key, a corrupt record) makes that provider
//! unavailable here with the reason (`key_unavailable`), and is never guessed around.

use std::collections::HashMap;

use async_nats::jetstream::kv::{self, Operation};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::SecretRecord;
use crate::providers::{KeySlot, KeyState};

use super::seal::{ALGORITHM, MasterKey, SealError};

/// Every provider's key slot, and how to fill it.
pub struct Keyring {
    master: Option<MasterKey>,
    /// Each provider's slot and what it holds without a stored key.
    slots: HashMap<String, (KeySlot, KeyState)>,
}

impl Keyring {
    /// The slots of `cfg`'s providers, holding their configured keys for now.
    pub fn new(cfg: &Config) -> Self {
        let master = cfg
            .secrets
            .master_key
            .as_ref()
            .and_then(|k| MasterKey::from_hex(k).ok());
        let slots = cfg
            .providers
            .iter()
            .map(|p| {
                let slot = crate::providers::configured_key(p);
                let configured = slot.state();
                (p.id.to_string(), (slot, configured))
            })
            .collect();
        Keyring { master, slots }
    }

    /// `provider`'s slot.
    pub fn slot(&self, provider: &str) -> Option<KeySlot> {
        self.slots.get(provider).map(|(s, _)| s.clone())
    }

    /// What the record stored under `key` means for this worker. The sealed key opens only
    /// for the provider it is stored under: a record copied to another name does not.
    fn open(&self, key: &str, record: &SecretRecord) -> Result<SecretString, SealError> {
        if record.store_key() != key {
            return Err(SealError::Corrupt("stored under another provider's name"));
        }
        if record.algorithm != ALGORITHM {
            return Err(SealError::Algorithm(record.algorithm.clone()));
        }
        let master = self.master.as_ref().ok_or(SealError::MasterKey)?;
        if record.master_key_id != master.id() {
            return Err(SealError::OtherMasterKey {
                record: record.master_key_id.clone(),
                ours: master.id().to_string(),
            });
        }
        master.open(key, &record.nonce, &record.ciphertext)
    }

    /// Applies one entry of `ai_secrets`: `<provider>` (the fleet's key) or
    /// `<provider>.<tenant>` (a tenant's own).
    pub fn apply(&self, key: &str, operation: Operation, value: &[u8]) {
        let (provider, tenant) = match key.split_once('.') {
            Some((p, t)) => (p, Some(t)),
            None => (key, None),
        };
        let Some((slot, configured)) = self.slots.get(provider) else {
            return;
        };
        if let Some(t) = tenant {
            let state = (operation == Operation::Put).then(|| self.state_of(key, value));
            if state.is_none() {
                tracing::info!(%provider, tenant = t, "tenant's key deleted: back to the fleet's key");
            }
            slot.set_tenant(t, state);
            return;
        }
        if operation != Operation::Put {
            tracing::info!(
                provider = key,
                "stored key deleted: back to the configured key"
            );
            slot.set(configured.clone());
            return;
        }
        slot.set(self.state_of(key, value));
    }

    /// What the record `value` stored under `key` gives this worker to call with.
    fn state_of(&self, key: &str, value: &[u8]) -> KeyState {
        match serde_json::from_slice::<SecretRecord>(value) {
            Err(_) => {
                let reason = format!("ai_secrets/{key} is not a valid record");
                tracing::error!(provider = key, %reason, "provider unavailable on this worker");
                KeyState::Unusable(reason)
            }
            Ok(record) => match self.open(key, &record) {
                Ok(secret) => {
                    tracing::info!(provider = key, key_id = %record.key_id,
                        fingerprint = %record.fingerprint, "stored key in use");
                    KeyState::Key(secret)
                }
                Err(e) => {
                    let reason = match e {
                        SealError::MasterKey => format!(
                            "the key of {key} is stored encrypted and this worker has no usable master key (set [secrets] master_key_env or master_key_file)"
                        ),
                        other => format!("the stored key of {key} cannot be used: {other}"),
                    };
                    tracing::error!(provider = key, key_id = %record.key_id, %reason,
                        "provider unavailable on this worker");
                    KeyState::Unusable(reason)
                }
            },
        }
    }

    /// Applies every stored key, the fleet's and the tenants' (before the worker takes
    /// requests).
    pub async fn load(&self, kv: &kv::Store) {
        use futures::TryStreamExt;
        let names: Vec<String> = match kv.keys().await {
            Ok(keys) => keys.try_collect().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored keys not listed; the watch will retry");
                Vec::new()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "stored keys not listed; the watch will retry");
                Vec::new()
            }
        };
        for name in names {
            match kv.entry(name.as_str()).await {
                Ok(Some(e)) => self.apply(&e.key, e.operation, &e.value),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key = %name, error = %e, "stored key not read; the watch will retry")
                }
            }
        }
    }

    /// Follows `ai_secrets` until `stop` fires.
    pub async fn run(&self, kv: kv::Store, stop: CancellationToken) {
        super::super::kv_watch::follow(&kv, "secrets", &stop, |e| {
            self.apply(&e.key, e.operation, &e.value)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::KeySlot;

    fn keyring(master: Option<&str>) -> Keyring {
        let mut slots = HashMap::new();
        slots.insert("p1".to_string(), (KeySlot::new(None), KeyState::None));
        Keyring {
            master: master
                .map(|m| MasterKey::from_hex(&SecretString::from(m.to_string())).unwrap()),
            slots,
        }
    }

    fn unusable(k: &Keyring) -> String {
        let e = k.slot("p1").unwrap().get().unwrap_err();
        assert_eq!(e.class, crate::contract::ErrorClass::KeyUnavailable);
        e.message
    }

    #[test]
    fn a_record_this_worker_cannot_open_makes_the_provider_unavailable_with_the_reason() {
        let k = keyring(None);
        k.apply("p1", Operation::Put, b"{not json");
        assert!(unusable(&k).contains("not a valid record"));
        let sealer = MasterKey::from_hex(&SecretString::from("ab".repeat(32))).unwrap();
        let (nonce, ciphertext) = sealer.seal("p1", "sk-CANARY-ring").unwrap();
        let record = serde_json::json!({
            "provider": "p1", "key_id": "k", "fingerprint": "f", "algorithm": ALGORITHM,
            "master_key_id": sealer.id(), "nonce": nonce, "ciphertext": ciphertext,
            "created_at": "2026-11-28T00:00:00Z", "set_by": {"verified": false}
        });
        let body = serde_json::to_vec(&record).unwrap();
        // Copied under another provider's name, it does not open.
        let mut two = keyring(Some(&"ab".repeat(32)));
        let slot = two.slots.remove("p1").unwrap();
        two.slots.insert("p2".into(), slot);
        two.apply("p2", Operation::Put, &body);
        assert!(two.slot("p2").unwrap().get().is_err());
        k.apply("p1", Operation::Put, &body);
        assert!(unusable(&k).contains("no usable master key"));
        let other = keyring(Some(&"cd".repeat(32)));
        other.apply("p1", Operation::Put, &body);
        assert!(unusable(&other).contains("sealed under master key"));
        let right = keyring(Some(&"ab".repeat(32)));
        right.apply("p1", Operation::Put, &body);
        let key = right.slot("p1").unwrap().current().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&key), "sk-CANARY-ring");
        // Deleted: back to the configured key (none here).
        right.apply("p1", Operation::Delete, b"");
        assert!(right.slot("p1").unwrap().get().unwrap().is_none());
    }
}
