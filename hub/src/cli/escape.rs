//! Text from the hub reaches the admin's terminal escaped. Device-supplied strings (agent version,
//! snapshot contents, fleet device names) are anything the device sent, and a terminal obeys
//! escape sequences in what it prints: a title change, a rewritten line, a hidden one.
//!
//! Every control character, C0 (ESC and the rest below U+0020), DEL and C1 (U+0080–U+009F, where
//! U+009B is an 8-bit CSI) and the bidirectional overrides that reorder what a line shows, is
//! written as its JSON escape `\uXXXX`: readable, unambiguous, and valid inside a JSON string, so
//! the same function makes `--json` output safe too. serde_json escapes C0 already but emits DEL
//! and C1 raw, and its pretty-printed newlines are structure, so JSON is escaped line by line.

use std::borrow::Cow;

use outpost_protocol::text::is_unsafe_char;

/// `text` with every control character written as `\uXXXX`.
pub(super) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Pretty JSON made safe for a terminal: control characters inside strings escaped.
pub(super) fn escape_json(pretty: &str) -> String {
    pretty
        .lines()
        .map(escape_controls)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_unchanged() {
        let text = "kiosk-17 · agent 0.1.0 (débian)";
        assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn c0_del_c1_and_escape_sequences_are_escaped() {
        let hostile = "v1\u{1b}]0;owned\u{7}\u{1b}[2J\r\n\t\u{7f}\u{9b}31m\u{85}\u{0}";
        assert_eq!(
            escape_controls(hostile),
            "v1\\u001b]0;owned\\u0007\\u001b[2J\\u000d\\u000a\\u0009\\u007f\\u009b31m\\u0085\\u0000"
        );
    }

    #[test]
    fn bidi_overrides_are_escaped() {
        assert_eq!(escape_controls("a\u{202e}b\u{2066}"), "a\\u202eb\\u2066");
    }

    #[test]
    fn json_output_stays_valid_json_with_the_same_value() {
        let value = serde_json::json!({ "agent_version": "1\u{1b}[31m\u{7f}\u{9b}x\n" });
        let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
        assert!(pretty.contains('\u{7f}') && pretty.contains('\u{9b}'));
        let safe = escape_json(&pretty);
        assert!(!safe.chars().any(|c| is_unsafe_char(c) && c != '\n'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap_or_default();
        assert_eq!(back, value);
    }
}
