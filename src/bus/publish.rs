//! Publishing results, events and dead letters.

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde::Serialize;

use crate::contract::{AnalysisResult, DeadLetter, Names};

/// A publish that did not reach its stream.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the message for {subject}")]
    Encode {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("publish to {subject} failed")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Publishes on the JetStream context with the right subjects and headers.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    client: async_nats::Client,
    names: Names,
}

impl Publisher {
    /// Over `js`/`client` with subjects from `names`.
    pub fn new(js: jetstream::Context, client: async_nats::Client, names: Names) -> Self {
        Publisher { js, client, names }
    }

    /// The subject names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    async fn js_publish(
        &self,
        subject: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<jetstream::publish::PublishAck, PublishError> {
        let err = |subject: &str, source: async_nats::Error| PublishError::Publish {
            subject: subject.to_string(),
            source,
        };
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
            .map_err(|e| err(&subject, e.into()))?;
        ack.await.map_err(|e| err(&subject, e.into()))
    }

    fn encode<T: Serialize>(subject: &str, value: &T) -> Result<Vec<u8>, PublishError> {
        serde_json::to_vec(value).map_err(|source| PublishError::Encode {
            subject: subject.to_string(),
            source,
        })
    }

    /// Publishes a result with `Nats-Msg-Id: <request_id>` and waits for the stream's ack
    /// (a duplicate is fine: the stream already holds this result). Also sends it to the
    /// request's `reply_to`, if any.
    pub async fn result(
        &self,
        result: &AnalysisResult,
        reply_to: Option<&str>,
        mut headers: HeaderMap,
    ) -> Result<bool, PublishError> {
        // A tenant's result goes to its own subjects, which only its account imports.
        let tenant = result.tenant.as_deref();
        let subject = match tenant {
            None => self.names.result(result.kind),
            Some(t) => self.names.tenant_result(t, result.kind),
        };
        let body = Self::encode(&subject, result)?;
        headers.insert("Nats-Msg-Id", result.record_key().as_str());
        let ack = self
            .js_publish(subject, headers.clone(), body.clone())
            .await?;
        match reply_to {
            // Requests naming these are dead-lettered before they get here; this is the
            // last line: a request never makes a worker write to KV, streams or events.
            Some(reply) if self.names.is_reserved(reply) => {
                tracing::warn!(request_id = %result.request_id, reply_to = reply,
                    "reply_to names a reserved subject; no reply sent");
            }
            // Core NATS, best effort: the stored result is the durable copy. A tenant's reply
            // subject lives in its own account: the server maps it back from here.
            Some(reply) => {
                let reply = match tenant {
                    None => reply.to_string(),
                    Some(t) => self.names.tenant_reply(t, reply),
                };
                let _ = self
                    .client
                    .publish_with_headers(reply, headers, body.into())
                    .await;
            }
            None => {}
        }
        Ok(ack.duplicate)
    }

    /// Publishes `event` to `subject` (an event, or an entry of another fleet stream such as
    /// the quality log) and waits for the stream's ack.
    pub async fn event<T: Serialize>(
        &self,
        subject: String,
        event: &T,
        headers: HeaderMap,
    ) -> Result<(), PublishError> {
        self.stored(subject, event, headers).await.map(|_| ())
    }

    /// [`event`](Self::event), returning the stream's ack: its sequence, and whether the
    /// stream already had the message (`Nats-Msg-Id`), in which case the sequence is the
    /// first copy's.
    pub async fn stored<T: Serialize>(
        &self,
        subject: String,
        value: &T,
        headers: HeaderMap,
    ) -> Result<jetstream::publish::PublishAck, PublishError> {
        let body = Self::encode(&subject, value)?;
        self.js_publish(subject, headers, body).await
    }

    /// Publishes a dead letter; with `msg_id`, a second publish of the same letter is dropped
    /// by the stream. Whether this one was stored (not a duplicate).
    pub async fn dead_letter(
        &self,
        dl: &DeadLetter,
        msg_id: Option<&str>,
    ) -> Result<bool, PublishError> {
        let subject = self.names.dead_letter(&dl.kind);
        let body = Self::encode(&subject, dl)?;
        let mut headers = HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        self.js_publish(subject, headers, body)
            .await
            .map(|ack| !ack.duplicate)
    }
}
