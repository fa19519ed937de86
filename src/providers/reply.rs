//! What an adapter reads from a successful answer, before the text is parsed, and the one
//! place that turns it into a [`Completion`] or an error, so the three adapters agree on
//! what a refusal or a truncated answer means.

use super::parse::parse_answer;
use super::{Completion, ProviderError};
use crate::contract::{ErrorClass, Kind, Usage};

/// Why the model stopped, reduced to what the engine cares about.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// Finished normally (or for a reason that does not change how the text is judged).
    Complete,
    /// Hit the output-token limit; the text may be cut off mid-JSON.
    Truncated,
    /// Refused or blocked on safety grounds; the reason is the vendor's word for it.
    Filtered(String),
}

/// The useful parts of a 2xx answer, in vendor-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The model that answered, as the vendor reports it.
    pub model: String,
    /// The answer text, all text parts joined.
    pub text: String,
    /// Tokens billed for this call.
    pub usage: Usage,
    /// Why the model stopped.
    pub stop: Stop,
}

impl Reply {
    /// Parses the text for `kind`. Tokens are billed even when the answer is unusable, so
    /// every error carries the usage.
    pub fn into_completion(
        self,
        kind: Kind,
        http_status: u16,
    ) -> Result<Completion, ProviderError> {
        let fail = |class, message: String| ProviderError {
            usage: Some(self.usage),
            ..ProviderError::new(class, message).with_status(http_status)
        };
        if let Stop::Filtered(reason) = &self.stop {
            return Err(fail(
                ErrorClass::ContentFiltered,
                format!("answer withheld on content policy ({reason})"),
            ));
        }
        match parse_answer(kind, &self.text) {
            Ok(answer) => Ok(Completion {
                model: self.model,
                answer,
                usage: self.usage,
                http_status,
            }),
            Err(e) if self.stop == Stop::Truncated => Err(fail(
                ErrorClass::InvalidResponse,
                format!("answer cut off at the output-token limit: {}", e.message),
            )),
            Err(e) => Err(fail(e.class, e.message)),
        }
    }
}

/// An answer whose shape is not the vendor's documented one.
pub fn malformed(reason: &str) -> ProviderError {
    ProviderError::new(
        ErrorClass::InvalidResponse,
        format!("unexpected answer shape: {reason}"),
    )
}

/// A token count at `pointer` in `body`; vendors omit zero counts, so absent is 0.
pub fn tokens(body: &serde_json::Value, pointer: &str) -> u64 {
    body.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Answer;

    fn reply(text: &str, stop: Stop) -> Reply {
        Reply {
            model: "m".into(),
            text: text.into(),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
            },
            stop,
        }
    }

    const SIGNAL: &str = r#"{"action":"hold","confidence":0.5,"rationale":"flat"}"#;

    #[test]
    fn a_good_answer_completes() {
        let c = reply(SIGNAL, Stop::Complete)
            .into_completion(Kind::Signal, 200)
            .unwrap();
        assert!(matches!(c.answer, Answer::Signal(_)));
        assert_eq!(c.usage.output_tokens, 5);
        assert_eq!(c.http_status, 200);
    }

    #[test]
    fn a_truncated_but_whole_answer_still_counts() {
        assert!(
            reply(SIGNAL, Stop::Truncated)
                .into_completion(Kind::Signal, 200)
                .is_ok()
        );
        let e = reply(r#"{"action":"hold","confid"#, Stop::Truncated)
            .into_completion(Kind::Signal, 200)
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::InvalidResponse);
        assert!(e.message.contains("output-token limit"));
        assert_eq!(e.usage.unwrap().input_tokens, 10);
    }

    #[test]
    fn a_refusal_is_content_filtered_even_with_text() {
        let e = reply(SIGNAL, Stop::Filtered("refusal".into()))
            .into_completion(Kind::Signal, 200)
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::ContentFiltered);
        assert_eq!(e.http_status, Some(200));
        assert!(e.usage.is_some());
    }
}
