//! A provider's API key as this worker holds it now. The adapters read it on every call, so a
//! key rotated in the encrypted store (`ai_secrets`) is used from the next call on, without a
//! restart.

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

/// A shared, swappable key. Cheap to clone; every clone sees the same key.
#[derive(Debug, Clone)]
pub struct KeySlot(Arc<RwLock<KeyState>>);

impl KeySlot {
    /// Holding `key` (none for a local server).
    pub fn new(key: Option<SecretString>) -> Self {
        KeySlot(Arc::new(RwLock::new(match key {
            Some(k) => KeyState::Key(k),
            None => KeyState::None,
        })))
    }

    /// Replaces what is held.
    pub fn set(&self, state: KeyState) {
        *self.0.write() = state;
    }

    /// The key for a call: `Ok(None)` for no key, an error when it cannot be read.
    pub fn get(&self) -> Result<Option<SecretString>, ProviderError> {
        match &*self.0.read() {
            KeyState::None => Ok(None),
            KeyState::Key(k) => Ok(Some(k.clone())),
            KeyState::Unusable(reason) => Err(ProviderError::new(
                ErrorClass::KeyUnavailable,
                reason.clone(),
            )),
        }
    }

    /// What it holds now.
    pub fn state(&self) -> KeyState {
        self.0.read().clone()
    }

    /// The key, if one is usable (to scrub it from messages).
    pub fn current(&self) -> Option<SecretString> {
        self.get().ok().flatten()
    }
}
