//! Text a device supplies (its agent version today, engine snapshot names later) before the hub
//! stores it or prints it.
//!
//! Why: such text reaches an admin's terminal through `endpoint show` and the hub's log. An escape
//! sequence in it can rewrite the screen, fake output or (on some terminals) set the window title
//! and answer back; a bidirectional override can make text read differently from what it is. The
//! rule is one pure function: at most [`MAX_DEVICE_TEXT`] bytes, and no control character (C0, DEL,
//! C1) and no bidirectional formatting character. Text that breaks the rule is refused, not
//! repaired: a genuine agent never sends it, and a refusal is easier to reason about than a
//! sanitiser that must be right about every terminal.

use thiserror::Error;

/// Longest device-supplied text: a version string is ~20 bytes, a container name under 256; 512
/// leaves room without letting a device fill rows.
pub const MAX_DEVICE_TEXT: usize = 512;

/// Why a device-supplied text was refused. Neither variant echoes the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum DeviceTextError {
    /// Longer than [`MAX_DEVICE_TEXT`] bytes.
    #[error("is {0} bytes long, more than the {MAX_DEVICE_TEXT} allowed")]
    TooLong(usize),
    /// Holds a control or bidirectional formatting character (escape sequences, newlines).
    #[error("holds the control character U+{0:04X}")]
    Control(u32),
}

/// `text` if a device may send it: at most [`MAX_DEVICE_TEXT`] bytes, no control character.
pub fn device_text(text: &str) -> Result<&str, DeviceTextError> {
    if text.len() > MAX_DEVICE_TEXT {
        return Err(DeviceTextError::TooLong(text.len()));
    }
    match text.chars().find(|c| is_unsafe_char(*c)) {
        Some(c) => Err(DeviceTextError::Control(c.into())),
        None => Ok(text),
    }
}

/// Whether a terminal could act on `c` instead of showing it, or show text other than it reads:
/// C0, DEL and C1 controls (`char::is_control`), and the bidirectional marks, embeddings,
/// overrides and isolates (U+200E-200F, U+202A-202E, U+2066-2069). The one rule the hub refuses
/// ([`device_text`]), replaces (`snapshot::sanitize_text`) and escapes (the CLI's output) by.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_version_passes() {
        assert_eq!(
            device_text("0.1.0-rc.1+build.7 (ü)"),
            Ok("0.1.0-rc.1+build.7 (ü)")
        );
        assert_eq!(device_text(""), Ok(""));
        assert_eq!(
            device_text(&"a".repeat(MAX_DEVICE_TEXT)).map(str::len),
            Ok(512)
        );
    }

    #[test]
    fn escape_sequences_newlines_and_c1_controls_are_refused() {
        assert_eq!(
            device_text("1.0\x1b]0;pwned\x07"),
            Err(DeviceTextError::Control(0x1b))
        );
        assert_eq!(
            device_text("1.0\nFAKE LINE"),
            Err(DeviceTextError::Control(0x0a))
        );
        assert_eq!(
            device_text("1.0\u{9b}31m"),
            Err(DeviceTextError::Control(0x9b))
        );
        assert_eq!(device_text("1.0\x7f"), Err(DeviceTextError::Control(0x7f)));
    }

    #[test]
    fn bidirectional_overrides_are_refused() {
        assert_eq!(
            device_text("1.0\u{202E}gpj.exe"),
            Err(DeviceTextError::Control(0x202E))
        );
        assert_eq!(
            device_text("\u{2066}x"),
            Err(DeviceTextError::Control(0x2066))
        );
    }

    #[test]
    fn overlong_text_is_refused_without_echoing_it() {
        let err = device_text(&"v".repeat(MAX_DEVICE_TEXT + 1)).unwrap_err();
        assert_eq!(err, DeviceTextError::TooLong(513));
        assert!(!err.to_string().contains("vvv"));
    }
}
