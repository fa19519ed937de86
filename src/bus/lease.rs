//! A fleet role held by one worker at a time: a lease record in `ai_provider_health`
//! (`_monitor_lease`, `_prober_lease`) taken and renewed with compare-and-set. A holder that
//! stops renewing loses it when it runs out, and another worker takes the role.

use std::time::Duration;

use async_nats::jetstream::kv;

use crate::contract::LeaseRecord;

use super::kv_record::{Decided, Decision, KvRecord};

/// One role's lease, as seen by one worker.
pub struct Lease {
    record: KvRecord<LeaseRecord>,
    key: &'static str,
    me: String,
}

impl Lease {
    /// The lease at `key` of bucket `kv`, for worker `me`.
    pub fn new(kv: kv::Store, key: &'static str, me: impl Into<String>) -> Self {
        Lease {
            record: KvRecord::new(kv, "lease"),
            key,
            me: me.into(),
        }
    }

    /// Takes or renews the lease for `ttl`; true when this worker holds it.
    pub async fn hold(&self, ttl: Duration) -> bool {
        let now = crate::engine::clock::wall_now();
        let mine = LeaseRecord {
            holder: self.me.clone(),
            until: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
        };
        let decided = self
            .record
            .modify(self.key, |current| match current {
                Some(l) if l.holder != self.me && l.until >= now => Decision::Keep(()),
                _ => Decision::Write(mine.clone(), ()),
            })
            .await;
        matches!(decided, Ok(Decided::Written { .. }))
    }
}
