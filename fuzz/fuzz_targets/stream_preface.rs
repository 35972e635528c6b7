//! The proxy stream preface: `stream::read_header` (hub → agent) and `stream::read_reply`
//! (agent → hub) over split reads. Byte 0 picks the decoder (bit 6), whether a header stream gets
//! the magic bytes put in front (bit 5: without them the fuzzer rarely gets past `BadMagic`), and
//! seeds how the rest of the input is split into reads (see `Chunked`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::stream::MAGIC;
use outpost_fuzz::{check_header, check_reply};

fuzz_target!(|data: &[u8]| {
    let [seed, stream @ ..] = data else {
        return;
    };
    if seed & 0x40 != 0 {
        check_reply(stream, *seed);
    } else if seed & 0x20 != 0 {
        let prefixed = [&MAGIC[..], stream].concat();
        check_header(&prefixed, *seed);
    } else {
        check_header(stream, *seed);
    }
});
