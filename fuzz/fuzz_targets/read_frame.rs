//! `wire::read_frame` over split reads. Byte 0 picks the message type (low 3 bits) and the limit:
//! the stream's real limit, or (bit 7) a small one (bits 3-6, times 4) so the oversize path is
//! reached with lengths the fuzzer can actually supply. Byte 1 seeds how the rest of the input is
//! split into reads (see `Chunked`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::wire::{
    AgentMessage, Datagram, EnrollReply, EnrollRequest, HubMessage, MAX_CONTROL_FRAME,
    MAX_DATAGRAM, MAX_ENROLL_FRAME,
};
use outpost_fuzz::check_frame;

fuzz_target!(|data: &[u8]| {
    let [select, seed, stream @ ..] = data else {
        return;
    };
    let limit = |real: usize| {
        if select & 0x80 != 0 {
            usize::from((select >> 3) & 0x0f) * 4
        } else {
            real
        }
    };
    match select & 0x07 {
        0 => check_frame::<EnrollRequest>(stream, limit(MAX_ENROLL_FRAME), *seed),
        1 => check_frame::<EnrollReply>(stream, limit(MAX_ENROLL_FRAME), *seed),
        2 => check_frame::<HubMessage>(stream, limit(MAX_CONTROL_FRAME), *seed),
        3 | 4 => check_frame::<AgentMessage>(stream, limit(MAX_CONTROL_FRAME), *seed),
        _ => check_frame::<Datagram>(stream, limit(MAX_DATAGRAM), *seed),
    }
});
