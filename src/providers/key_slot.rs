//! A provider's API key as this worker holds it now. The adapters read it on every call, so a
//! key rotated in the encrypted store (`ai_secrets`) is used from the next call on, without a
//! restart. A tenant may have a key of its own for a provider (bring your own key): its calls
//! use it instead of the fleet's.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use secrecy::SecretString;

use super::ProviderError;
use crate::contract::ErrorClass;

/// What a worker holds for a provider.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// No key (a local server): no credentials are sent.
    None,
    Key(SecretString),
    /// A key exists but this worker cannot read it; calls fail with `key_unavailable`.
    Unusable(String),
}

/// A shared, swappable key (and the tenants' own keys). Cheap to clone; every clone sees the
/// same keys.
#[derive(Debug, Clone)]
pub struct KeySlot {
    fleet: Arc<RwLock<KeyState>>,
    tenants: Arc<RwLock<HashMap<String, KeyState>>>,
}

impl KeySlot {
    /// Holding `key` (none for a local server).
    pub fn new(key: Option<SecretString>) -> Self {
        KeySlot {
            fleet: Arc::new(RwLock::new(match key {
                Some(k) => KeyState::Key(k),
                None => KeyState::None,
            })),
            tenants: Arc::default(),
        }
    }

    /// Replaces the fleet's key.
    pub fn set(&self, state: KeyState) {
        *self.fleet.write() = state;
    }

    /// Replaces `tenant`'s own key (`None`: it has none, and uses the fleet's).
    pub fn set_tenant(&self, tenant: &str, state: Option<KeyState>) {
        let mut tenants = self.tenants.write();
        match state {
            Some(s) => tenants.insert(tenant.to_string(), s),
            None => tenants.remove(tenant),
        };
    }

    /// Whether `tenant` calls with a key of its own.
    pub fn has_tenant_key(&self, tenant: &str) -> bool {
        self.tenants.read().contains_key(tenant)
    }

    /// The key for a call of `tenant` (`None`: the default tenant): its own if it has one,
    /// else the fleet's.
    pub fn get_for(&self, tenant: Option<&str>) -> Result<Option<SecretString>, ProviderError> {
        if let Some(t) = tenant
            && let Some(state) = self.tenants.read().get(t)
        {
            return usable(state);
        }
        self.get()
    }

    /// The key a call of `tenant` would use, if usable (to scrub it from messages).
    pub fn current_for(&self, tenant: Option<&str>) -> Option<SecretString> {
        self.get_for(tenant).ok().flatten()
    }

    /// The fleet's key for a call: `Ok(None)` for no key, an error when it cannot be read.
    pub fn get(&self) -> Result<Option<SecretString>, ProviderError> {
        usable(&self.fleet.read())
    }

    /// What it holds now for the fleet.
    pub fn state(&self) -> KeyState {
        self.fleet.read().clone()
    }

    /// The fleet's key, if one is usable (to scrub it from messages).
    pub fn current(&self) -> Option<SecretString> {
        self.get().ok().flatten()
    }
}

/// The key of `state` for a call.
fn usable(state: &KeyState) -> Result<Option<SecretString>, ProviderError> {
    match state {
        KeyState::None => Ok(None),
        KeyState::Key(k) => Ok(Some(k.clone())),
        KeyState::Unusable(reason) => Err(ProviderError::new(
            ErrorClass::KeyUnavailable,
            reason.clone(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_tenants_own_key_serves_only_that_tenant() {
        let slot = KeySlot::new(Some(SecretString::from("fleet")));
        slot.set_tenant("acme", Some(KeyState::Key(SecretString::from("acme-own"))));
        let key = |t| {
            slot.get_for(t)
                .unwrap()
                .unwrap()
                .expose_secret()
                .to_string()
        };
        assert_eq!(key(Some("acme")), "acme-own");
        assert_eq!(key(Some("globex")), "fleet");
        assert_eq!(key(None), "fleet");
        slot.set_tenant("acme", Some(KeyState::Unusable("corrupt".into())));
        assert_eq!(
            slot.get_for(Some("acme")).unwrap_err().class,
            ErrorClass::KeyUnavailable
        );
        slot.set_tenant("acme", None);
        assert_eq!(key(Some("acme")), "fleet");
    }
}
