//! Sealing provider keys: AES-256-GCM (ring, the crypto our TLS already uses) under the
//! fleet's master key, with a random 96-bit nonce per key and the provider id as additional
//! data (a record copied under another provider's name does not open). Pure: no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

/// The algorithm named in each record.
pub const ALGORITHM: &str = "aes-256-gcm";

/// Why a key could not be sealed or opened. Never holds key material.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("the master key is not 64 hex digits")]
    MasterKey,
    #[error("no random bytes for a nonce")]
    Random,
    #[error("the record is sealed with {0}, not aes-256-gcm")]
    Algorithm(String),
    #[error("the record was sealed under master key {record}, this worker has {ours}")]
    OtherMasterKey { record: String, ours: String },
    #[error("the record is corrupt ({0})")]
    Corrupt(&'static str),
    #[error("the record does not decrypt (wrong master key, or tampered with)")]
    Open,
}

/// The first 16 hex digits of `bytes`' SHA-256.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fleet's master key.
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// From 64 hex digits.
    pub fn from_hex(text: &SecretString) -> Result<Self, SealError> {
        let text = text.expose_secret().trim();
        if !crate::config::is_master_key(text) {
            return Err(SealError::MasterKey);
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| SealError::MasterKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::MasterKey)?;
        // Domain-separated from the provider-key fingerprints.
        let id = fingerprint(&[b"ai-failover/master-key/v1:".as_slice(), &bytes].concat());
        Ok(MasterKey {
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// Names the key in records (its fingerprint).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret` for `provider`: `(nonce, ciphertext)`, both base64.
    pub fn seal(&self, provider: &str, secret: &str) -> Result<(String, String), SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut data = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(provider.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Random)?;
        Ok((B64.encode(nonce), B64.encode(data)))
    }

    /// Opens what [`seal`](Self::seal) made for `provider`.
    pub fn open(
        &self,
        provider: &str,
        nonce: &str,
        ciphertext: &str,
    ) -> Result<SecretString, SealError> {
        let nonce: [u8; NONCE_LEN] = B64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SealError::Corrupt("nonce"))?;
        let mut data = B64
            .decode(ciphertext)
            .map_err(|_| SealError::Corrupt("ciphertext"))?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(provider.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Open)?;
        let text = std::str::from_utf8(plain).map_err(|_| SealError::Corrupt("plaintext"))?;
        Ok(SecretString::from(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: char) -> MasterKey {
        MasterKey::from_hex(&SecretString::from(byte.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_master_key_and_provider() {
        let m = master('a');
        let (nonce, ct) = m.seal("openai", "sk-CANARY-seal").unwrap();
        assert!(
            !ct.contains("CANARY") && !B64.decode(&ct).unwrap().windows(6).any(|w| w == b"CANARY")
        );
        assert_eq!(
            m.open("openai", &nonce, &ct).unwrap().expose_secret(),
            "sk-CANARY-seal"
        );
        assert_eq!(
            master('b').open("openai", &nonce, &ct).unwrap_err(),
            SealError::Open
        );
        assert_eq!(m.open("grok", &nonce, &ct).unwrap_err(), SealError::Open);
        assert_eq!(
            m.open("openai", "x", &ct).unwrap_err(),
            SealError::Corrupt("nonce")
        );
        // A fresh nonce each time.
        assert_ne!(
            m.seal("openai", "k").unwrap().0,
            m.seal("openai", "k").unwrap().0
        );
        assert_eq!(m.id().len(), 16);
        assert_ne!(m.id(), master('b').id());
        let bad = MasterKey::from_hex(&SecretString::from("zz".repeat(32)));
        assert_eq!(bad.unwrap_err(), SealError::MasterKey);
    }
}
