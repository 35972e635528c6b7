//! The enrolment request as the hub meets it from anyone who completes a handshake: a frame read
//! by `wire::read_frame` under `MAX_ENROLL_FRAME` (with the framing checks of `check_frame`), then
//! the device-text rule on its agent version. The same rule runs on the raw input as text, since
//! every device-supplied string the hub stores goes through it.
//!
//! Input: byte 0 is the read-splitting seed; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::text::{device_text, DeviceTextError, MAX_DEVICE_TEXT};
use outpost_protocol::wire::{self, EnrollRequest, MAX_ENROLL_FRAME};
use outpost_fuzz::check_frame;

/// `device_text` accepts exactly the short text without control characters, returns it unchanged,
/// and never echoes it in an error.
fn check_device_text(text: &str) {
    let forbidden = text.chars().find(|c| {
        c.is_control()
            || matches!(*c, '\u{200E}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    match device_text(text) {
        Ok(same) => {
            assert_eq!(same, text);
            assert!(text.len() <= MAX_DEVICE_TEXT && forbidden.is_none());
        }
        Err(DeviceTextError::TooLong(n)) => assert!(n == text.len() && n > MAX_DEVICE_TEXT),
        Err(DeviceTextError::Control(c)) => {
            assert!(text.len() <= MAX_DEVICE_TEXT);
            assert_eq!(Some(c), forbidden.map(u32::from));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    check_frame::<EnrollRequest>(stream, MAX_ENROLL_FRAME, seed);
    if let Some(body) = stream.get(4..) {
        if let Ok(request) = wire::decode::<EnrollRequest>(body) {
            check_device_text(&request.agent_version);
        }
    }
    check_device_text(&String::from_utf8_lossy(stream));
});
