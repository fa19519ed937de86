//! `keys.set`, `keys.list`, `keys.delete`: provider keys in the encrypted store. A key is
//! validated against its provider with a free call (a models listing) before anything is
//! written; the control service audits every call with the key redacted. With a `tenant`,
//! the key is that tenant's own (bring your own key): used for its calls only.

use secrecy::SecretString;

use crate::contract::{
    Actor, DEFAULT_TENANT, KeyInfo, KeysDeleteReply, KeysDeleteRequest, KeysListReply,
    KeysSetReply, KeysSetRequest, SecretRecord, is_tenant_id, secret_key,
};
use crate::providers::KeySlot;

use super::super::kv_record::KvRecord;
use super::super::secrets::{MasterKey, seal};
use super::failure::ControlFailure;
use super::handlers::{Ctx, known_provider};

/// A `keys.set` body. A parse error says where, never what it read: the body holds a key.
pub(super) fn parse(body: &[u8]) -> Result<KeysSetRequest, ControlFailure> {
    serde_json::from_slice(body).map_err(|e| ControlFailure::BadRequest {
        endpoint: "keys.set".into(),
        message: format!(
            "expected {{\"provider\": \"<id>\", \"api_key\": \"<key>\"}} ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// A tenant named in a request: a tenant id, and not the default tenant (whose calls use the
/// fleet's key).
fn tenant(tenant: Option<&str>) -> Result<Option<&str>, ControlFailure> {
    match tenant {
        None => Ok(None),
        Some(DEFAULT_TENANT) => Err(ControlFailure::Invalid(
            "the default tenant calls with the fleet's key: leave the tenant out".into(),
        )),
        Some(t) if is_tenant_id(t) => Ok(Some(t)),
        Some(t) => Err(ControlFailure::Invalid(format!(
            "`{t}` is not a tenant id ([a-z][a-z0-9_]{{0,31}})"
        ))),
    }
}

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
    let tenant = tenant(req.tenant.as_deref())?;
    let store_key = secret_key(&req.provider, tenant);
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
        .seal(&store_key, key)
        .map_err(|e| ControlFailure::Unavailable(e.to_string()))?;
    let record = SecretRecord {
        provider: p.id.clone(),
        tenant: tenant.map(str::to_string),
        key_id: uuid::Uuid::new_v4().to_string(),
        fingerprint: seal::fingerprint(key.as_bytes()),
        algorithm: seal::ALGORITHM.into(),
        master_key_id: master.id().to_string(),
        nonce,
        ciphertext,
        created_at: crate::engine::clock::wall_now(),
        set_by: actor.clone(),
    };
    // A worker with another master key must not re-seal the fleet's keys under it.
    if let Some(entry) = ctx
        .bus
        .secrets
        .entry(store_key.as_str())
        .await
        .ok()
        .flatten()
        && let Ok(old) = serde_json::from_slice::<SecretRecord>(&entry.value)
        && old.master_key_id != master.id()
    {
        return Err(ControlFailure::Invalid(format!(
            "the stored key of {} is sealed under master key {}, this worker has {}: \
             give the workers the same master key, or delete the stored key first",
            p.id,
            old.master_key_id,
            master.id()
        )));
    }
    records(ctx).put(&store_key, &record).await?;
    if tenant.is_some() {
        // A tenant's key never quarantined the provider (its refusals are key_unavailable).
        return Ok(KeysSetReply {
            key: KeyInfo::from(&record),
        });
    }
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
    use futures::TryStreamExt;
    let unread = |e: String| ControlFailure::Unavailable(format!("ai_secrets not read: {e}"));
    let names: Vec<String> = match ctx.bus.secrets.keys().await {
        Ok(k) => k.try_collect().await.map_err(|e| unread(e.to_string()))?,
        Err(e) => return Err(unread(e.to_string())),
    };
    let mut keys = Vec::new();
    for name in names {
        let entry =
            ctx.bus.secrets.entry(name.as_str()).await.map_err(|e| {
                ControlFailure::Unavailable(format!("ai_secrets/{name} not read: {e}"))
            })?;
        let Some(entry) =
            entry.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
        else {
            continue;
        };
        match serde_json::from_slice::<SecretRecord>(&entry.value) {
            Ok(r) => keys.push(KeyInfo::from(&r)),
            // Listed so that it can be seen, and deleted.
            Err(_) => tracing::warn!(key = %name, "ai_secrets holds an invalid record"),
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
    let store_key = secret_key(&req.provider, tenant(req.tenant.as_deref())?);
    // Read raw: a corrupt record must be deletable too.
    let entry = ctx
        .bus
        .secrets
        .entry(store_key.as_str())
        .await
        .map_err(|e| {
            ControlFailure::Unavailable(format!("ai_secrets/{store_key} not read: {e}"))
        })?;
    let Some(entry) = entry.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
    else {
        return Ok(KeysDeleteReply { deleted: false });
    };
    records(ctx).delete(&store_key, entry.revision).await?;
    Ok(KeysDeleteReply { deleted: true })
}
