//! `keys.set`, `keys.list`, `keys.delete`: provider keys in the encrypted store. A key is
//! validated against its provider with a free call (a models listing) before anything is
//! written; the control service audits every call with the key redacted.

use secrecy::SecretString;

use crate::contract::{
    Actor, KeyInfo, KeysDeleteReply, KeysDeleteRequest, KeysListReply, KeysSetReply,
    KeysSetRequest, SecretRecord,
};
use crate::providers::KeySlot;

use super::super::kv_record::KvRecord;
use super::super::secrets::{MasterKey, seal};
use super::failure::ControlFailure;
use super::handlers::{Ctx, known_provider};

fn records(ctx: &Ctx) -> KvRecord<SecretRecord> {
    KvRecord::new(ctx.bus.secrets.clone(), "secret record")
}

/// Validates, seals and stores a key; lifts an `auth` quarantine it cures.
pub(super) async fn set(
    ctx: &Ctx,
    actor: &Actor,
    req: KeysSetRequest,
) -> Result<KeysSetReply, ControlFailure> {
    known_provider(&ctx.cfg, &req.provider)?;
    let master = ctx
        .cfg
        .secrets
        .master_key
        .as_ref()
        .and_then(|k| MasterKey::from_hex(k).ok())
        .ok_or_else(|| {
            ControlFailure::Unavailable(
                "this worker has no master key: configure [secrets] master_key_env or master_key_file".into(),
            )
        })?;
    let key = req.api_key.trim();
    if key.is_empty() || key.len() > 4096 {
        return Err(ControlFailure::Invalid(
            "the key is empty or longer than 4096 bytes".into(),
        ));
    }
    let p = ctx
        .cfg
        .provider(&req.provider)
        .ok_or_else(|| ControlFailure::Invalid(format!("unknown provider {}", req.provider)))?;
    // A free call with the new key: a key the provider refuses is never stored.
    let slot = KeySlot::new(Some(SecretString::from(key.to_string())));
    let probe = crate::providers::try_build_with(p, &ctx.cfg.engine, slot)
        .map_err(|e| ControlFailure::Unavailable(crate::telemetry::chain(&e)))?;
    let model = p.models.first().map_or("", String::as_str);
    let timeout = std::time::Duration::from_millis(p.timeout_ms);
    if let Err(e) = probe.probe(model, timeout).await {
        return Err(if e.class == crate::contract::ErrorClass::Auth {
            ControlFailure::Invalid(format!("{} rejected the key: {}", p.id, e.message))
        } else {
            ControlFailure::Unavailable(format!(
                "the key could not be validated ({}: {}); nothing was stored",
                e.class, e.message
            ))
        });
    }
    let (nonce, ciphertext) = master
        .seal(&p.id, key)
        .map_err(|e| ControlFailure::Unavailable(e.to_string()))?;
    let record = SecretRecord {
        provider: p.id.clone(),
        key_id: uuid::Uuid::new_v4().to_string(),
        fingerprint: seal::fingerprint(key.as_bytes()),
        algorithm: seal::ALGORITHM.into(),
        master_key_id: master.id().to_string(),
        nonce,
        ciphertext,
        created_at: crate::engine::clock::wall_now(),
        set_by: actor.clone(),
    };
    records(ctx).put(&p.id, &record).await?;
    let lifted = ctx
        .fleet
        .health()
        .modify(&p.id, |r, _| {
            r.quarantined.then(|| {
                r.quarantined = false;
                "a new key validated: quarantine lifted".to_string()
            })
        })
        .await?;
    if let Some(change) = lifted {
        ctx.announcer.announce(&change).await;
    }
    Ok(KeysSetReply {
        key: KeyInfo::from(&record),
    })
}

/// Every stored key, without the keys.
pub(super) async fn list(ctx: &Ctx) -> Result<KeysListReply, ControlFailure> {
    let records = records(ctx);
    let mut keys = Vec::new();
    for p in &ctx.cfg.providers {
        if let Some(r) = records.get(&p.id).await? {
            keys.push(KeyInfo::from(&r.value));
        }
    }
    Ok(KeysListReply { keys })
}

/// Deletes a stored key: the provider goes back to its configured key.
pub(super) async fn delete(
    ctx: &Ctx,
    req: KeysDeleteRequest,
) -> Result<KeysDeleteReply, ControlFailure> {
    known_provider(&ctx.cfg, &req.provider)?;
    let records = records(ctx);
    let Some(current) = records.get(&req.provider).await? else {
        return Ok(KeysDeleteReply { deleted: false });
    };
    records.delete(&req.provider, current.revision).await?;
    Ok(KeysDeleteReply { deleted: true })
}
