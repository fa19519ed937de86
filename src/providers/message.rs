//! Short, safe error messages.
//!
//! Vendor error messages end up in results, events and KV records that many programs read,
//! so they are clipped, and anything that looks like a credential is blanked: OpenAI, for one,
//! echoes a masked key back in its 401 message, and a proxy might echo it unmasked.

/// Longest message kept, in characters.
pub const MAX_CHARS: usize = 200;

/// What replaces a credential-looking word.
pub const REDACTED: &str = "[redacted]";

/// `text` on one line, credential-looking words redacted, clipped to [`MAX_CHARS`].
pub fn short(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(if looks_like_a_key(word) {
            REDACTED
        } else {
            word
        });
    }
    clip(out)
}

/// `text` with every occurrence of `secret` replaced, for the adapter that knows its key.
pub fn without(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, REDACTED)
    }
}

fn looks_like_a_key(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '*');
    const PREFIXES: [&str; 4] = ["sk-", "sk_", "xai-", "AIza"];
    PREFIXES.iter().any(|p| word.starts_with(p)) || word.contains("***")
}

fn clip(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        let m = short("Incorrect API key provided: sk-proj-abc****************wxyz. See docs.");
        assert_eq!(m, "Incorrect API key provided: [redacted] See docs.");
        assert_eq!(short("key AIzaSyA-123 bad"), "key [redacted] bad");
        assert_eq!(without("x my-secret y", "my-secret"), "x [redacted] y");
        assert_eq!(without("x", ""), "x");
    }

    #[test]
    fn messages_are_one_short_line() {
        assert_eq!(short("a\n  b\tc"), "a b c");
        let long = "é".repeat(500);
        let m = short(&long);
        assert_eq!(m.chars().count(), MAX_CHARS + 1);
        assert!(m.ends_with('…'));
    }
}
